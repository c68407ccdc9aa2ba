"""Tests of the blob stores (modelyard.storage)."""
