"""The stores under test, each with raw access to the bytes it keeps."""

from __future__ import annotations

import abc
import hashlib
import os
import uuid
from pathlib import Path

from modelyard.storage import BlobStore, LocalBlobStore, S3BlobStore
from tests.support.moto import FAKE_CREDENTIALS, s3_client

MASTER_KEY = bytes.fromhex("8d" * 16 + "3c" * 16)
OTHER_KEY = bytes.fromhex("11" * 32)
MARKER = b"MODELYARD-PLAINTEXT-MARKER-42"
MIB = 1024 * 1024


def sample(size: int) -> bytes:
    """Random bytes of ``size`` with MARKER at the start, across a 1 MiB boundary and the end."""
    data = bytearray(os.urandom(size))
    for at in (0, MIB - len(MARKER) // 2, size - len(MARKER)):
        if 0 <= at <= size - len(MARKER):
            data[at : at + len(MARKER)] = MARKER
    return bytes(data)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_under(root: Path) -> list[Path]:
    """Every file below ``root`` (working folders of live processes may remain, empty)."""
    return [p for p in root.rglob("*") if not p.is_dir()]


class Case(abc.ABC):
    """One backend, with or without encryption."""

    store: BlobStore
    tmp_dir: Path

    def __init__(self, master_key: bytes | None) -> None:
        self.encrypted = master_key is not None

    def stage(self, data: bytes) -> Path:
        """Write ``data`` to a fresh file in the store's tmp dir, as an upload would."""
        path = self.tmp_dir / f"upload-{uuid.uuid4().hex}"
        path.write_bytes(data)
        return path

    @abc.abstractmethod
    def stored(self) -> list[str]:
        """Names of every blob the backend holds, read around the store."""

    @abc.abstractmethod
    def read_raw(self, sha: str) -> bytes:
        """The bytes kept for a blob, as they are at rest."""

    @abc.abstractmethod
    def write_raw(self, sha: str, data: bytes) -> None:
        """Replace the bytes kept for a blob, around the store."""

    @abc.abstractmethod
    def reopen(self, master_key: bytes | None) -> BlobStore:
        """Another store over the same place, with the given key."""


class LocalCase(Case):
    def __init__(self, base: Path, master_key: bytes | None) -> None:
        super().__init__(master_key)
        self.root = base / "blobs"
        self.tmp_dir = base / "tmp"
        self.root.mkdir()
        self.tmp_dir.mkdir()
        self.store = LocalBlobStore(self.root, self.tmp_dir, master_key)

    def _file(self, sha: str) -> Path:
        return self.root / sha[:2] / sha[2:4] / sha

    def stored(self) -> list[str]:
        return sorted(p.name for p in self.root.rglob("*") if p.is_file())

    def read_raw(self, sha: str) -> bytes:
        return self._file(sha).read_bytes()

    def write_raw(self, sha: str, data: bytes) -> None:
        self._file(sha).write_bytes(data)

    def reopen(self, master_key: bytes | None) -> BlobStore:
        return LocalBlobStore(self.root, self.tmp_dir, master_key)


class S3Case(Case):
    prefix = "blobs/"

    def __init__(self, endpoint: str, base: Path, master_key: bytes | None) -> None:
        super().__init__(master_key)
        self.endpoint = endpoint
        self.bucket = f"test-{uuid.uuid4().hex[:16]}"
        self.tmp_dir = base / "tmp"
        self.tmp_dir.mkdir()
        self.client = s3_client(endpoint)
        self.store = self.reopen(master_key)

    def stored(self) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=self.bucket)
        return sorted(o["Key"].removeprefix(self.prefix) for o in listing.get("Contents", []))

    def read_raw(self, sha: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.prefix + sha)["Body"].read()

    def write_raw(self, sha: str, data: bytes) -> None:
        key = self.prefix + sha
        metadata = self.client.head_object(Bucket=self.bucket, Key=key)["Metadata"]
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, Metadata=metadata)

    def reopen(self, master_key: bytes | None) -> BlobStore:
        return S3BlobStore(
            self.bucket,
            self.prefix,
            self.endpoint,
            "us-east-1",
            self.tmp_dir,
            master_key,
            access_key_id=FAKE_CREDENTIALS["aws_access_key_id"],
            secret_access_key=FAKE_CREDENTIALS["aws_secret_access_key"],
        )
