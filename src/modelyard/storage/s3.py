"""Blobs as objects in an S3-compatible bucket (AWS S3, MinIO, moto), keyed ``prefix + sha256``.

Importing this module imports boto3; :mod:`modelyard.storage` imports it only on first use.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from modelyard.errors import InvalidInput, NotFound, Unavailable
from modelyard.storage.base import CHUNK_SIZE, BlobInfo, BlobStore, StoredBlob
from modelyard.storage.crypto import (
    HEADER_SIZE,
    KEY_SIZE,
    check_sha256,
    decrypt_stream,
    encrypted_copy,
    hash_file,
    plaintext_size,
)
from modelyard.storage.workdirs import process_dir

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType

SIZE_METADATA = "plaintext-size"
_MISSING = {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}
_ADDRESS = re.compile(r"[0-9a-f]{64}")


class S3BlobStore(BlobStore):
    """A blob store in an S3 bucket; the bucket is created when missing.

    Uploads stream from the staged file (multipart above ``part_size``), so a blob appears
    whole or not at all. With a ``master_key`` (32 bytes) objects hold the encrypted form
    (see :mod:`modelyard.storage.crypto`), staged in this process's working folder under
    ``tmp_dir`` (default: the system's temporary directory; it only ever holds ciphertext)
    before upload. An object's last write time is its ``LastModified``. Credentials
    come from boto3's usual chain unless ``access_key_id``/``secret_access_key`` are given.

    Example::

        store = S3BlobStore("modelyard", "blobs/", "http://127.0.0.1:9000", "us-east-1",
                            Path("data/tmp"), master_key=None)
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        tmp_dir: Path | None = None,
        master_key: bytes | None = None,
        *,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        part_size: int = 16 * 1024 * 1024,
    ) -> None:
        if master_key is not None and len(master_key) != KEY_SIZE:
            raise ValueError(f"the master key must be {KEY_SIZE} bytes, not {len(master_key)}")
        self.bucket = bucket
        self.prefix = prefix
        self.tmp_dir = tmp_dir if tmp_dir is not None else Path(tempfile.gettempdir())
        self._master_key = master_key
        self._region = region
        # Custom endpoints (MinIO, moto, an IP address) rarely resolve per-bucket host
        # names, so address buckets by path there.
        config = Config(
            retries={"mode": "standard"},
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        )
        self._s3: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )
        self._transfer = TransferConfig(
            multipart_threshold=part_size, multipart_chunksize=part_size, max_concurrency=4
        )
        with _s3_errors():
            self._ensure_bucket()

    @property
    def encrypted(self) -> bool:
        """Whether blobs are stored encrypted."""
        return self._master_key is not None

    def put_file(self, path: Path, sha256: str | None = None, *, trusted: bool = False) -> BlobInfo:
        """Store the file at ``path`` and return its address.

        On success the file is consumed (uploaded and removed, or just removed when the
        blob was already stored); on any error it is left where it is.
        """
        if trusted and sha256 is not None:
            digest, size = check_sha256(sha256), path.stat().st_size
        else:
            digest, size = hash_file(path)
        if sha256 is not None and check_sha256(sha256) != digest:
            raise InvalidInput(f"content has sha256 {digest}, not the declared {sha256}")
        if not self._renew(digest, size):
            if self._master_key is None:
                self._upload(path, digest, size)
            else:
                with encrypted_copy(path, process_dir(self.tmp_dir), self._master_key) as sealed:
                    self._upload(sealed, digest, size)
        path.unlink()
        return BlobInfo(digest, size)

    def open_stream(self, sha256: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Yield the blob's plaintext; raises NotFound at once when it does not exist."""
        with _s3_errors(sha256):
            body = self._s3.get_object(Bucket=self.bucket, Key=self._key(sha256))["Body"]
        return self._stream(body, chunk_size)

    def exists(self, sha256: str) -> bool:
        """Whether the blob is stored."""
        try:
            with _s3_errors(sha256):
                self._s3.head_object(Bucket=self.bucket, Key=self._key(sha256))
        except NotFound:
            return False
        return True

    def size(self, sha256: str) -> int:
        """Plaintext size of the blob in bytes; raises NotFound when it does not exist."""
        key = self._key(sha256)
        with _s3_errors(sha256):
            head = self._s3.head_object(Bucket=self.bucket, Key=key)
            recorded = head.get("Metadata", {}).get(SIZE_METADATA)
            if recorded is not None:
                return int(recorded)
            if self._master_key is None:
                return head["ContentLength"]
            # Written by another tool without the metadata: the header tells the layout.
            first = self._s3.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes=0-{HEADER_SIZE - 1}"
            )["Body"].read()
            return plaintext_size(first, head["ContentLength"])

    def delete(self, sha256: str) -> None:
        """Remove the blob; deleting a missing blob is not an error."""
        with _s3_errors(sha256):
            self._s3.delete_object(Bucket=self.bucket, Key=self._key(sha256))

    def list_blobs(self) -> Iterator[StoredBlob]:
        """Every object under the prefix named by a sha256, with its ``LastModified``."""
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        with _s3_errors():
            for page in pages:
                for item in page.get("Contents", []):
                    name = item["Key"][len(self.prefix) :]
                    if _ADDRESS.fullmatch(name):
                        yield StoredBlob(name, item["LastModified"].timestamp())

    def delete_if_written_before(self, sha256: str, cutoff: float) -> bool:
        """Delete the object if its ``LastModified`` is before ``cutoff``.

        S3 offers no atomic check-and-delete here: a reuse landing between the check and the
        delete (two requests apart) loses the blob.
        """
        key = self._key(sha256)
        try:
            with _s3_errors(sha256):
                head = self._s3.head_object(Bucket=self.bucket, Key=key)
        except NotFound:
            return False
        if head["LastModified"].timestamp() >= cutoff:
            return False
        with _s3_errors(sha256):
            self._s3.delete_object(Bucket=self.bucket, Key=key)
        return True

    def _renew(self, sha256: str, size: int) -> bool:
        """Renew a stored object's ``LastModified`` (a copy onto itself); False if absent."""
        key = self._key(sha256)
        try:
            with _s3_errors(sha256):
                self._s3.copy(
                    {"Bucket": self.bucket, "Key": key},
                    self.bucket,
                    key,
                    ExtraArgs={
                        "MetadataDirective": "REPLACE",
                        "Metadata": {SIZE_METADATA: str(size)},
                        "ContentType": "application/octet-stream",
                    },
                    Config=self._transfer,
                )
        except NotFound:
            return False
        return True

    def _key(self, sha256: str) -> str:
        return self.prefix + check_sha256(sha256)

    def _upload(self, path: Path, sha256: str, size: int) -> None:
        extra = {"Metadata": {SIZE_METADATA: str(size)}, "ContentType": "application/octet-stream"}
        with _s3_errors(sha256):
            self._s3.upload_file(
                str(path), self.bucket, self._key(sha256), ExtraArgs=extra, Config=self._transfer
            )

    def _stream(self, body: StreamingBody, chunk_size: int) -> Iterator[bytes]:
        try:
            with _s3_errors():
                chunks = body.iter_chunks(chunk_size)
                if self._master_key is None:
                    yield from chunks
                else:
                    yield from decrypt_stream(chunks, self._master_key)
        finally:
            body.close()

    def _ensure_bucket(self) -> None:
        try:
            self._s3.head_bucket(Bucket=self.bucket)
            return
        except ClientError as err:
            if _code(err) not in _MISSING:
                raise
        try:
            if self._region == "us-east-1":
                self._s3.create_bucket(Bucket=self.bucket)
            else:
                self._s3.create_bucket(
                    Bucket=self.bucket,
                    CreateBucketConfiguration={
                        "LocationConstraint": cast("BucketLocationConstraintType", self._region)
                    },
                )
        except ClientError as err:
            # Another server replica may have created it in the meantime.
            if _code(err) != "BucketAlreadyOwnedByYou":
                raise


@contextlib.contextmanager
def _s3_errors(sha256: str | None = None) -> Iterator[None]:
    """Turn a missing object into NotFound and an unreachable endpoint into Unavailable."""
    try:
        yield
    except ClientError as err:
        if sha256 is not None and _code(err) in _MISSING:
            raise NotFound(f"blob {sha256} not found", sha256=sha256) from None
        raise
    except (BotoConnectionError, HTTPClientError, IncompleteReadError) as err:
        raise Unavailable(f"the S3 endpoint cannot be reached: {err}") from err


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))
