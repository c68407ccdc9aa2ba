"""Streaming uploads and downloads with progress reports.

Uploads are generators over the file, so a multi-gigabyte artifact never sits in memory;
their exact size is known up front and sent as ``Content-Length``, which lets the server
refuse an oversized upload before reading it. Downloads go to ``<dest>.part`` and are
renamed into place only when complete, so ``dest`` never holds a truncated file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from email.message import Message
from pathlib import Path
from typing import TypeAlias

from modelyard.client._exceptions import ModelyardError

ProgressCallback: TypeAlias = Callable[[int, int | None], None]
"""Called as ``progress(done_bytes, total_bytes)``; ``total_bytes`` is None when unknown."""

StrPath: TypeAlias = str | os.PathLike[str]
"""A file system path, as a string or a :class:`pathlib.Path`."""

CHUNK_SIZE = 1024 * 1024


def _read_exactly(path: Path, size: int) -> Iterator[bytes]:
    """The file's bytes in chunks, failing if it changes size while being sent."""
    remaining = size
    with path.open("rb") as file:
        while remaining:
            chunk = file.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                raise ModelyardError(f"{path} shrank while it was being uploaded")
            remaining -= len(chunk)
            yield chunk
        # The declared Content-Length is already on the wire; a longer file cannot be sent.
        if file.read(1):
            raise ModelyardError(f"{path} grew while it was being uploaded")


class FileUpload:
    """One file sent as the raw request body (``application/octet-stream``)."""

    content_type = "application/octet-stream"

    def __init__(self, path: Path) -> None:
        if path.is_dir():
            raise ValueError(f"{path} is a directory; pack it as a .tar, .tar.gz or .zip first")
        self.path = path
        self.size = path.stat().st_size

    def chunks(self) -> Iterator[bytes]:
        """The body, in chunks of at most ``CHUNK_SIZE`` bytes."""
        return _read_exactly(self.path, self.size)


class MultipartUpload:
    """Several files sent as ``multipart/form-data``, one named part per file."""

    def __init__(self, parts: Sequence[tuple[str, Path]]) -> None:
        self.boundary = secrets.token_hex(16)
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        self._parts = [
            (self._head(field, path), path, path.stat().st_size) for field, path in parts
        ]
        self._tail = f"--{self.boundary}--\r\n".encode()
        self.size = sum(len(head) + size + 2 for head, _, size in self._parts) + len(self._tail)

    def _head(self, field: str, path: Path) -> bytes:
        return (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{_quote(path.name)}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()

    def chunks(self) -> Iterator[bytes]:
        """The body: each part's header, its file in chunks, then the closing boundary."""
        for head, path, size in self._parts:
            yield head
            yield from _read_exactly(path, size)
            yield b"\r\n"
        yield self._tail


def _quote(filename: str) -> str:
    """Escape a file name for a multipart header the way browsers (and httpx) do."""
    table = {'"': "%22", "\\": "\\\\", "\r": "%0D", "\n": "%0A"}
    return "".join(table.get(c, c) for c in filename)


def report(
    chunks: Iterable[bytes], total: int | None, progress: ProgressCallback | None
) -> Iterator[bytes]:
    """Pass ``chunks`` through, calling ``progress(done, total)`` first with 0 then per chunk."""
    if progress is None:
        yield from chunks
        return
    done = 0
    progress(done, total)
    for chunk in chunks:
        yield chunk
        # Reported after the consumer asks for the next chunk, i.e. once this one is sent.
        done += len(chunk)
        progress(done, total)


def target_path(dest: Path, content_disposition: str | None, fallback: str) -> Path:
    """Where a download lands: ``dest`` itself, or a file inside it when it is a directory.

    The name inside a directory comes from the server's ``Content-Disposition`` (reduced to
    a bare file name, so a hostile server cannot write outside ``dest``) or ``fallback``.
    """
    if not dest.is_dir():
        return dest
    name = None
    if content_disposition:
        message = Message()
        message["content-disposition"] = content_disposition
        name = message.get_filename()
    name = Path(name.replace("\\", "/")).name if name else ""
    return dest / (name if name not in ("", ".", "..") else fallback)


def write_atomically(
    dest: Path,
    chunks: Iterable[bytes],
    progress: Callable[[], None] | None = None,
) -> Path:
    """Write ``chunks`` to ``dest.part``, then rename it to ``dest``.

    ``progress`` is called after each chunk is written. On any failure the ``.part`` file
    is removed and ``dest`` is left as it was.
    """
    part = dest.with_name(dest.name + ".part")
    try:
        with part.open("wb") as file:
            for chunk in chunks:
                file.write(chunk)
                if progress is not None:
                    progress()
            file.flush()
            os.fsync(file.fileno())
        part.replace(dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise
    return dest
