"""What only the local store does: its layout, plaintext paths, bounded memory."""

from __future__ import annotations

import hashlib
import os
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from modelyard.storage import LocalBlobStore
from tests.storage.cases import MASTER_KEY, MIB, LocalCase, files_under, sample, sha256


@pytest.fixture(params=[None, MASTER_KEY], ids=["plain", "encrypted"])
def local(request: pytest.FixtureRequest, tmp_path: Path) -> LocalCase:
    return LocalCase(tmp_path, request.param)


def test_blobs_are_sharded_by_their_address(local: LocalCase) -> None:
    info = local.store.put_file(local.stage(b"weights"))

    sha = info.sha256
    assert (local.root / sha[:2] / sha[2:4] / sha).is_file()
    assert files_under(local.tmp_dir) == []


def test_local_path_is_the_plaintext_file_only_when_unencrypted(local: LocalCase) -> None:
    data = sample(MIB)
    info = local.store.put_file(local.stage(data))

    path = local.store.local_path(info.sha256)

    if local.encrypted:
        assert path is None
    else:
        assert path is not None
        assert path.read_bytes() == data
    assert local.store.local_path(sha256(b"missing")) is None


def test_file_staged_on_another_file_system_is_stored(local: LocalCase) -> None:
    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == local.tmp_dir.stat().st_dev:
        pytest.skip("needs a second file system (/dev/shm) to stage on")
    data = sample(MIB + 1)
    fd, name = tempfile.mkstemp(dir=other)
    staged = Path(name)
    with os.fdopen(fd, "wb") as f:
        f.write(data)

    try:
        info = local.store.put_file(staged)
    finally:
        staged.unlink(missing_ok=True)

    assert not staged.exists()
    assert b"".join(local.store.open_stream(info.sha256)) == data
    assert files_under(local.tmp_dir) == []


def test_master_key_must_be_32_bytes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        LocalBlobStore(tmp_path, tmp_path, master_key=b"short")


def _peak_bytes(action: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_put_and_read_hold_a_few_chunks_not_the_file(local: LocalCase) -> None:
    size = 32 * MIB
    staged = local.tmp_dir / "big"
    digest = hashlib.sha256()
    with staged.open("wb") as f:
        for _ in range(size // MIB):
            chunk = os.urandom(MIB)
            digest.update(chunk)
            f.write(chunk)
    sha = digest.hexdigest()

    put_peak = _peak_bytes(lambda: local.store.put_file(staged, sha256=sha))

    read_digest = hashlib.sha256()

    def read() -> None:
        for chunk in local.store.open_stream(sha):
            read_digest.update(chunk)

    read_peak = _peak_bytes(read)

    assert read_digest.hexdigest() == sha
    assert put_peak < 8 * MIB
    assert read_peak < 8 * MIB
