"""Staging of uploads: stream bytes into a temporary file, hashing and counting as they come.

Nothing is held whole in memory, and the size limit is enforced while reading, so an
oversized upload is cut off early instead of filling the disk. Staged files and scratch
folders live in the working folder of the process that made them
(:func:`modelyard.storage.workdirs.process_dir`), so what a killed process leaves behind is
swept as soon as it is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from modelyard.errors import InvalidInput, PayloadTooLarge
from modelyard.storage.workdirs import process_dir

SYNC_EVERY_BYTES = 64 * 1024 * 1024


@dataclass
class StagedFile:
    """An upload that has fully arrived in a temporary file."""

    path: Path
    sha256: str
    size: int
    filename: str | None = None
    _kept: bool = field(default=False, repr=False)

    def discard(self) -> None:
        """Remove the temporary file (no-op if a store already consumed it)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def head(self, n: int = 64) -> bytes:
        """The first ``n`` bytes, for format detection."""
        with self.path.open("rb") as f:
            return f.read(n)


class _Writer:
    def __init__(self, tmp_dir: Path, max_bytes: int, filename: str | None) -> None:
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=process_dir(tmp_dir))
        self.file = os.fdopen(fd, "wb")
        self.path = Path(name)
        self.digest = hashlib.sha256()
        self.size = 0
        self.unsynced = 0
        self.max_bytes = max_bytes
        self.filename = filename

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise PayloadTooLarge(
                f"upload exceeds the limit of {self.max_bytes} bytes (MODELYARD_MAX_UPLOAD_BYTES)"
            )
        self.digest.update(chunk)
        self.file.write(chunk)
        self.unsynced += len(chunk)
        if self.unsynced >= SYNC_EVERY_BYTES:
            # Flush to disk while the upload is still arriving, so the store's final fsync
            # (which makes the blob durable before it becomes visible) has little left to do.
            self.file.flush()
            os.fdatasync(self.file.fileno())
            self.unsynced = 0

    def finish(self) -> StagedFile:
        self.file.close()
        if self.size == 0:
            self.path.unlink(missing_ok=True)
            raise InvalidInput("the upload is empty")
        return StagedFile(self.path, self.digest.hexdigest(), self.size, self.filename)

    def abort(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


# Bytes gathered before they are handed to the writing thread: few, large writes.
BUFFER_BYTES = 1024 * 1024


async def stage_stream(
    chunks: AsyncIterator[bytes], tmp_dir: Path, max_bytes: int, filename: str | None = None
) -> StagedFile:
    """Write an async byte stream (an HTTP body) to a temporary file.

    Hashing and writing run in a thread, one buffer behind the receiving, so the event loop
    keeps reading the socket while the previous megabyte is hashed and written.
    """
    loop = asyncio.get_running_loop()
    writer = _Writer(tmp_dir, max_bytes, filename)
    pending: asyncio.Future[None] | None = None
    buffer = bytearray()
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > max_bytes:
                raise PayloadTooLarge(
                    f"upload exceeds the limit of {max_bytes} bytes (MODELYARD_MAX_UPLOAD_BYTES)"
                )
            buffer += chunk
            if len(buffer) >= BUFFER_BYTES:
                if pending is not None:
                    await pending
                pending = loop.run_in_executor(None, writer.write, bytes(buffer))
                buffer.clear()
        if pending is not None:
            await pending
        if buffer:
            writer.write(bytes(buffer))
        return writer.finish()
    except BaseException:
        if pending is not None and not pending.done():
            with contextlib.suppress(BaseException):
                await pending
        writer.abort()
        raise


def stage_file(source: Path, tmp_dir: Path, max_bytes: int) -> StagedFile:
    """Copy a local file into staging (used for files made on the server, e.g. by jobs)."""
    with source.open("rb") as f:
        return stage_fileobj(f, tmp_dir, max_bytes, source.name)


def stage_fileobj(
    source: BinaryIO, tmp_dir: Path, max_bytes: int, filename: str | None = None
) -> StagedFile:
    """Copy the rest of an open file (a multipart part, a spooled upload) into staging."""
    writer = _Writer(tmp_dir, max_bytes, filename)
    try:
        for chunk in iter(lambda: source.read(BUFFER_BYTES), b""):
            writer.write(chunk)
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


@contextlib.contextmanager
def scratch_dir(tmp_dir: Path, prefix: str) -> Iterator[Path]:
    """A private temporary folder in this process's working folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix, dir=process_dir(tmp_dir)) as name:
        yield Path(name)
