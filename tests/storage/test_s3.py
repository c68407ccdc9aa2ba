"""What only the S3 store does: its bucket, multipart uploads, object metadata, errors."""

from __future__ import annotations

import socket
import tempfile
import uuid
from pathlib import Path

import pytest

from modelyard.errors import Unavailable
from modelyard.storage import S3BlobStore
from modelyard.storage.crypto import HEADER_SIZE, TAG_SIZE
from tests.storage.cases import MASTER_KEY, MIB, files_under, sample
from tests.support.moto import FAKE_CREDENTIALS, s3_client


def _store(endpoint: str, tmp_path: Path, bucket: str, **options: object) -> S3BlobStore:
    values: dict[str, object] = {
        "prefix": "blobs/",
        "endpoint_url": endpoint,
        "tmp_dir": tmp_path,
        "access_key_id": FAKE_CREDENTIALS["aws_access_key_id"],
        "secret_access_key": FAKE_CREDENTIALS["aws_secret_access_key"],
    }
    values.update(options)
    return S3BlobStore(bucket, **values)  # type: ignore[arg-type]


def _staged(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / f"upload-{uuid.uuid4().hex}"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_missing_bucket_is_created_once(s3_endpoint: str, tmp_path: Path, region: str) -> None:
    bucket = f"fresh-{uuid.uuid4().hex[:12]}"
    client = s3_client(s3_endpoint)

    first = _store(s3_endpoint, tmp_path, bucket, region=region)
    info = first.put_file(_staged(tmp_path, b"shared"))
    second = _store(s3_endpoint, tmp_path, bucket, region=region)

    names = [b["Name"] for b in client.list_buckets()["Buckets"]]
    assert names.count(bucket) == 1
    assert b"".join(second.open_stream(info.sha256)) == b"shared"


@pytest.mark.parametrize("master_key", [None, MASTER_KEY], ids=["plain", "encrypted"])
def test_large_blob_is_uploaded_in_parts(
    s3_endpoint: str, tmp_path: Path, master_key: bytes | None
) -> None:
    bucket = f"parts-{uuid.uuid4().hex[:12]}"
    store = _store(s3_endpoint, tmp_path, bucket, master_key=master_key, part_size=5 * MIB)
    data = sample(11 * MIB)

    info = store.put_file(_staged(tmp_path, data))

    head = s3_client(s3_endpoint).head_object(Bucket=bucket, Key="blobs/" + info.sha256)
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload of three parts
    assert head["Metadata"]["plaintext-size"] == str(len(data))
    stored = len(data) + (HEADER_SIZE + 11 * TAG_SIZE if master_key else 0)
    assert head["ContentLength"] == stored
    assert store.size(info.sha256) == len(data)
    assert b"".join(store.open_stream(info.sha256)) == data
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("master_key", [None, MASTER_KEY], ids=["plain", "encrypted"])
def test_size_without_metadata_comes_from_the_object(
    s3_endpoint: str, tmp_path: Path, master_key: bytes | None
) -> None:
    bucket = f"bare-{uuid.uuid4().hex[:12]}"
    store = _store(s3_endpoint, tmp_path, bucket, master_key=master_key)
    data = sample(2 * MIB + 10)
    info = store.put_file(_staged(tmp_path, data))
    client = s3_client(s3_endpoint)
    key = "blobs/" + info.sha256
    # Copied by another tool, which dropped the user metadata.
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=body)

    assert store.size(info.sha256) == len(data)


def test_unreachable_endpoint_is_unavailable(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"

    with pytest.raises(Unavailable, match="cannot be reached"):
        _store(closed, tmp_path, "nowhere")


def test_encrypted_store_works_without_a_tmp_dir(s3_endpoint: str) -> None:
    store = S3BlobStore(
        f"systmp-{uuid.uuid4().hex[:12]}",
        "",
        s3_endpoint,
        "us-east-1",
        None,
        MASTER_KEY,
        access_key_id=FAKE_CREDENTIALS["aws_access_key_id"],
        secret_access_key=FAKE_CREDENTIALS["aws_secret_access_key"],
    )
    fd, name = tempfile.mkstemp()
    with open(fd, "wb") as f:
        f.write(b"weights")
    staged = Path(name)

    info = store.put_file(staged)

    assert not staged.exists()
    assert b"".join(store.open_stream(info.sha256)) == b"weights"
