"""The model registry: models, versions, aliases, and safe intake of artifacts."""

from modelyard.registry.service import ModelRegistry, VersionMeta

__all__ = ["ModelRegistry", "VersionMeta"]
