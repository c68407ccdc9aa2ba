"""Data sets: intake, storage and access rules."""

from modelyard.datasets.service import DatasetService

__all__ = ["DatasetService"]
