"""Staging uploads: hashing, limits, and where staged files live."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from modelyard.errors import InvalidInput, PayloadTooLarge
from modelyard.storage.staging import scratch_dir, stage_fileobj, stage_stream
from modelyard.storage.workdirs import process_dir


async def _chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def test_stage_stream_hashes_and_counts(tmp_path: Path) -> None:
    import hashlib

    data = [os.urandom(700_000) for _ in range(5)]
    staged = asyncio.run(stage_stream(_chunks(data), tmp_path, 10**9, "x.bin"))
    assert staged.path.read_bytes() == b"".join(data)
    assert staged.sha256 == hashlib.sha256(b"".join(data)).hexdigest()
    assert staged.size == 3_500_000 and staged.filename == "x.bin"


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_oversized_and_empty_uploads_leave_nothing(tmp_path: Path) -> None:
    with pytest.raises(PayloadTooLarge):
        asyncio.run(stage_stream(_chunks([b"x" * 600_000] * 4), tmp_path, 1_000_000))
    with pytest.raises(InvalidInput):
        asyncio.run(stage_stream(_chunks([]), tmp_path, 1_000_000))
    with pytest.raises(PayloadTooLarge):
        stage_fileobj(io.BytesIO(b"y" * 2_000_000), tmp_path, 1_000_000)
    assert _files(tmp_path) == []


def test_staged_files_and_scratch_folders_live_in_this_process_folder(tmp_path: Path) -> None:
    own = process_dir(tmp_path)
    staged = stage_fileobj(io.BytesIO(b"payload"), tmp_path, 1_000, "p.bin")
    assert staged.path.parent == own and staged.path.read_bytes() == b"payload"
    assert own.stat().st_mode & 0o777 == 0o700
    with scratch_dir(tmp_path, "job-") as work:
        assert work.parent == own
        (work / "x.npy").write_bytes(b"data")
    assert not work.exists()
    staged.discard()
    assert _files(tmp_path) == []
