"""Blob storage: content-addressed artifacts and data sets, on local disk or S3.

``S3BlobStore`` is imported on first use, so that importing this package does not import
boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelyard.storage.base import BlobInfo, BlobStore
from modelyard.storage.factory import build_blob_store
from modelyard.storage.local import LocalBlobStore

if TYPE_CHECKING:
    from modelyard.storage.s3 import S3BlobStore

__all__ = ["BlobInfo", "BlobStore", "LocalBlobStore", "S3BlobStore", "build_blob_store"]


def __getattr__(name: str) -> Any:
    if name == "S3BlobStore":
        from modelyard.storage.s3 import S3BlobStore

        return S3BlobStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
