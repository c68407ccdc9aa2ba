"""Build the blob store the settings ask for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard.storage.base import BlobStore
from modelyard.storage.local import LocalBlobStore

if TYPE_CHECKING:
    from modelyard.config import Settings


def build_blob_store(settings: Settings) -> BlobStore:
    """The configured blob store, with the directories it needs created.

    ``local`` keeps blobs under ``data_dir/blobs``; ``s3`` uses the ``s3_*`` settings and
    boto3's usual credential chain (``AWS_ACCESS_KEY_ID``, profiles, instance roles).
    Both encrypt at rest when ``encryption_key`` is set.
    """
    master_key = settings.master_key()
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    if settings.blob_store == "s3":
        from modelyard.storage.s3 import S3BlobStore

        return S3BlobStore(
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            tmp_dir=settings.tmp_dir,
            master_key=master_key,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=(
                settings.s3_secret_access_key.get_secret_value()
                if settings.s3_secret_access_key
                else None
            ),
        )
    root = settings.data_dir / "blobs"
    root.mkdir(parents=True, exist_ok=True)
    return LocalBlobStore(root, settings.tmp_dir, master_key)
