"""Blobs as files in a local directory, content-addressed: ``root/ab/cd/<sha256>``."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from modelyard.errors import InvalidInput, NotFound
from modelyard.storage.base import CHUNK_SIZE, BlobInfo, BlobStore, StoredBlob
from modelyard.storage.crypto import (
    HEADER_SIZE,
    KEY_SIZE,
    check_sha256,
    decrypt_stream,
    encrypted_copy,
    hash_file,
    plaintext_size,
    read_chunks,
)
from modelyard.storage.workdirs import process_dir

_ADDRESS = re.compile(r"[0-9a-f]{64}")
# A blob being collected is renamed to ``<sha256>.collecting-<random>`` first, so that a
# concurrent reuse either renews it before the rename (and it is put back) or finds it gone.
_COLLECTING = ".collecting-"
# A rename marker older than this was left by a collector that died between two syscalls.
_COLLECTING_LEFTOVER_S = 60.0


class LocalBlobStore(BlobStore):
    """A blob store in a directory on this machine.

    ``tmp_dir`` must be on the same file system as ``root``: a blob becomes visible by an
    atomic rename from there. With a ``master_key`` (32 bytes) every blob is stored
    encrypted (see :mod:`modelyard.storage.crypto`) and :meth:`local_path` gives None.

    Example::

        store = LocalBlobStore(Path("data/blobs"), Path("data/tmp"), master_key=None)
        info = store.put_file(staged_path)
        data = b"".join(store.open_stream(info.sha256))
    """

    def __init__(self, root: Path, tmp_dir: Path, master_key: bytes | None = None) -> None:
        if master_key is not None and len(master_key) != KEY_SIZE:
            raise ValueError(f"the master key must be {KEY_SIZE} bytes, not {len(master_key)}")
        self.root = root
        self.tmp_dir = tmp_dir
        self._master_key = master_key

    @property
    def encrypted(self) -> bool:
        """Whether blobs are stored encrypted."""
        return self._master_key is not None

    def put_file(self, path: Path, sha256: str | None = None, *, trusted: bool = False) -> BlobInfo:
        """Store the file at ``path`` and return its address.

        On success the file is consumed (moved into the store, or removed when the blob
        was already stored); on any error it is left where it is.
        """
        if trusted and sha256 is not None:
            digest, size = check_sha256(sha256), path.stat().st_size
        else:
            digest, size = hash_file(path)
        if sha256 is not None and check_sha256(sha256) != digest:
            raise InvalidInput(f"content has sha256 {digest}, not the declared {sha256}")
        dest = self._path(digest)
        if _renew(dest):
            path.unlink()  # same address, same content: nothing to write
        elif self._master_key is None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._move_into_place(path, dest)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with encrypted_copy(path, process_dir(self.tmp_dir), self._master_key) as sealed:
                os.replace(sealed, dest)
            path.unlink()
        return BlobInfo(digest, size)

    def open_stream(self, sha256: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Yield the blob's plaintext; raises NotFound at once when it does not exist.

        Unencrypted blobs come in chunks of ``chunk_size``; encrypted ones in the chunks
        they were stored in (1 MiB).
        """
        f = self._open(sha256)
        return self._stream(f, chunk_size)

    def exists(self, sha256: str) -> bool:
        """Whether the blob is stored."""
        return self._path(sha256).is_file()

    def size(self, sha256: str) -> int:
        """Plaintext size of the blob in bytes; raises NotFound when it does not exist."""
        with self._open(sha256) as f:
            stored = os.fstat(f.fileno()).st_size
            if self._master_key is None:
                return stored
            return plaintext_size(f.read(HEADER_SIZE), stored)

    def delete(self, sha256: str) -> None:
        """Remove the blob; deleting a missing blob is not an error."""
        self._path(sha256).unlink(missing_ok=True)

    def list_blobs(self) -> Iterator[StoredBlob]:
        """Every stored blob with its last write time (the file's modification time)."""
        if not self.root.is_dir():
            return
        for first in _subdirs(self.root):
            for second in _subdirs(first):
                with os.scandir(second) as entries:
                    for entry in entries:
                        if _ADDRESS.fullmatch(entry.name):
                            with contextlib.suppress(FileNotFoundError):
                                yield StoredBlob(entry.name, entry.stat().st_mtime)
                        elif _COLLECTING in entry.name:
                            _drop_leftover_marker(Path(entry.path))

    def delete_if_written_before(self, sha256: str, cutoff: float) -> bool:
        """Delete the blob's file if its modification time is before ``cutoff``."""
        path = self._path(sha256)
        try:
            if path.stat().st_mtime >= cutoff:
                return False
            marker = path.with_name(f"{path.name}{_COLLECTING}{uuid.uuid4().hex}")
            os.rename(path, marker)
        except FileNotFoundError:
            return False
        if marker.stat().st_mtime >= cutoff:
            # Reused between the check and the rename: put it back, unless the reuse
            # already found it gone and wrote it again.
            with contextlib.suppress(FileExistsError):
                os.link(marker, path)
            marker.unlink()
            return False
        marker.unlink()
        return True

    def local_path(self, sha256: str) -> Path | None:
        """The blob's file when it is stored unencrypted, else None."""
        path = self._path(sha256)
        return path if self._master_key is None and path.is_file() else None

    def _path(self, sha256: str) -> Path:
        address = check_sha256(sha256)
        return self.root / address[:2] / address[2:4] / address

    def _open(self, sha256: str) -> BinaryIO:
        try:
            return self._path(sha256).open("rb")
        except FileNotFoundError:
            raise NotFound(f"blob {sha256} not found", sha256=sha256) from None

    def _stream(self, f: BinaryIO, chunk_size: int) -> Iterator[bytes]:
        with f:
            chunks = read_chunks(f, chunk_size)
            if self._master_key is None:
                yield from chunks
            else:
                yield from decrypt_stream(chunks, self._master_key)

    def _move_into_place(self, path: Path, dest: Path) -> None:
        # The bytes must be on disk before the rename publishes them; otherwise a power
        # cut could leave a visible blob with missing content.
        _fsync(path)
        try:
            os.replace(path, dest)
        except OSError as err:
            if err.errno != errno.EXDEV:
                raise
            # Staged on another file system: copy into tmp_dir first, so the blob still
            # appears by one atomic rename.
            fd, name = tempfile.mkstemp(
                dir=process_dir(self.tmp_dir), prefix=".copying-", suffix=".part"
            )
            try:
                with os.fdopen(fd, "wb") as out, path.open("rb") as src:
                    shutil.copyfileobj(src, out, CHUNK_SIZE)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(name, dest)
            finally:
                Path(name).unlink(missing_ok=True)
            path.unlink()


def _renew(path: Path) -> bool:
    """Mark a stored blob as written now; False when it is not stored."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    except PermissionError:
        pass  # written by another user sharing the directory: stored, but not renewable
    return True


def _subdirs(path: Path) -> Iterator[Path]:
    with os.scandir(path) as entries:
        return iter([Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)])


def _drop_leftover_marker(path: Path) -> None:
    # A rename sets the change time, so it tells how long the marker has existed.
    with contextlib.suppress(FileNotFoundError):
        if path.lstat().st_ctime < time.time() - _COLLECTING_LEFTOVER_S:
            path.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
