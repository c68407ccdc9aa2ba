"""build_blob_store from Settings, and what importing the package costs."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

import modelyard.storage
from modelyard.config import Settings
from modelyard.storage import LocalBlobStore, S3BlobStore, build_blob_store
from tests.storage.cases import MARKER, MASTER_KEY, sample
from tests.support.moto import FAKE_CREDENTIALS, s3_client

MakeSettings = Callable[..., Settings]


def _put(settings: Settings, data: bytes) -> str:
    store = build_blob_store(settings)
    staged = settings.tmp_dir / "upload"
    staged.write_bytes(data)
    sha = store.put_file(staged).sha256
    assert b"".join(store.open_stream(sha)) == data
    return sha


def test_local_store_lives_in_the_data_dir(make_settings: MakeSettings) -> None:
    settings = make_settings()

    store = build_blob_store(settings)

    assert isinstance(store, LocalBlobStore)
    assert store.root == settings.data_dir / "blobs"
    assert store.tmp_dir == settings.tmp_dir
    assert store.root.is_dir()
    assert settings.tmp_dir.is_dir()
    assert not store.encrypted


def test_encryption_key_setting_encrypts_local_blobs(make_settings: MakeSettings) -> None:
    settings = make_settings(encryption_key=MASTER_KEY.hex())
    data = sample(100_000)

    sha = _put(settings, data)

    raw = next((settings.data_dir / "blobs").rglob(sha)).read_bytes()
    assert MARKER in data
    assert MARKER not in raw


def test_s3_settings_build_an_s3_store(
    make_settings: MakeSettings, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Settings carry no credentials: the store takes boto3's usual chain.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_CREDENTIALS["aws_secret_access_key"])
    bucket = f"factory-{uuid.uuid4().hex[:12]}"
    settings = make_settings(
        blob_store="s3",
        s3_endpoint_url=s3_endpoint,
        s3_bucket=bucket,
        s3_prefix="team-a",
        encryption_key=MASTER_KEY.hex(),
    )
    data = sample(100_000)

    assert isinstance(build_blob_store(settings), S3BlobStore)
    sha = _put(settings, data)

    raw = s3_client(s3_endpoint).get_object(Bucket=bucket, Key=f"team-a/{sha}")["Body"].read()
    assert MARKER not in raw


def test_package_exports_what_it_lists() -> None:
    for name in modelyard.storage.__all__:
        assert getattr(modelyard.storage, name) is not None
    with pytest.raises(AttributeError):
        _ = modelyard.storage.NoSuchThing


def test_importing_the_package_does_not_import_boto3(tmp_path: Path) -> None:
    probe = (
        "import sys, modelyard.storage\n"
        "assert 'boto3' not in sys.modules, 'boto3 imported eagerly'\n"
        "modelyard.storage.S3BlobStore\n"
        "assert 'boto3' in sys.modules\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr
