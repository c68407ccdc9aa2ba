"""Staging uploads: limits, and the start-up sweep of what crashes left behind."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from modelyard.errors import InvalidInput, PayloadTooLarge
from modelyard.storage.staging import stage_stream, sweep_stale


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


def test_oversized_and_empty_uploads_leave_nothing(tmp_path: Path) -> None:
    with pytest.raises(PayloadTooLarge):
        asyncio.run(stage_stream(_chunks([b"x" * 600_000] * 4), tmp_path, 1_000_000))
    with pytest.raises(InvalidInput):
        asyncio.run(stage_stream(_chunks([]), tmp_path, 1_000_000))
    assert list(tmp_path.iterdir()) == []


def test_sweep_removes_only_old_leftovers(tmp_path: Path) -> None:
    old_file = tmp_path / "upload-old.part"
    old_dir = tmp_path / "job-old"
    fresh = tmp_path / "upload-new.part"
    old_file.write_bytes(b"x")
    old_dir.mkdir()
    (old_dir / "checkpoint.bin").write_bytes(b"y")
    fresh.write_bytes(b"z")
    past = time.time() - 7200
    for path in (old_file, old_dir):
        os.utime(path, (past, past))
    assert sweep_stale(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["upload-new.part"]
