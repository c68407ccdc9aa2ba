"""Safe unpacking of uploaded tar and zip archives.

An upload is hostile until proven otherwise, so :func:`safe_extract` writes regular files
and directories only, strictly inside ``dest``, and counts the bytes it actually writes
(headers can lie). It refuses, with :class:`~modelyard.errors.UnsafeArtifact` naming the
member:

- absolute paths, ``..`` components, backslashes and NUL bytes in names;
- symbolic and hard links, devices, FIFOs and anything else that is not a file or folder;
- duplicate members (a later copy could replace a file after it was checked);
- more than ``max_members`` members, more than ``max_total_bytes`` unpacked, and
  unpacked/packed ratios above ``max_ratio`` (zip and gzip bombs).

On any failure, everything it created is removed again.

Example::

    if is_archive(upload) is not None:
        files = safe_extract(upload, work_dir / "unpacked", max_total_bytes=2 << 30)
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import io
import lzma
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from modelyard.errors import InvalidInput, UnsafeArtifact

ArchiveKind = Literal["tar", "zip"]

_CHUNK = 1 << 20
# Under this many unpacked bytes a ratio proves nothing: a few KiB of tar padding or a
# small all-zero tensor compress far better than 200:1 and are harmless.
_RATIO_FLOOR_BYTES = 1 << 20
# Tar headers, long-name records and block padding are not member data but still come
# out of the decompressor; this bounds them per member.
_TAR_OVERHEAD_PER_MEMBER = 4096
# Failures of the server's own disk, raised as they are; any other error creating a member
# is the member's fault.
_SERVER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES})
_GZIP_MAGIC = b"\x1f\x8b"
_BZ2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"


def is_archive(path: Path) -> ArchiveKind | None:
    """Say whether ``path`` is a tar (plain, gzip, bzip2 or xz) or a zip archive.

    Only the first block is decompressed, so this is cheap even for a bomb. Note that
    TorchScript and ``torch.export`` files are zip archives too.
    """
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        with _open_decompressed(path) as stream:
            block = stream.read(tarfile.BLOCKSIZE)
    except (OSError, EOFError, lzma.LZMAError, zlib.error):
        return None
    if len(block) < tarfile.BLOCKSIZE:
        return None
    try:
        tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError:
        return None
    return "tar"


def safe_extract(
    archive: Path,
    dest: Path,
    *,
    max_total_bytes: int,
    max_members: int = 10_000,
    max_ratio: float = 200.0,
) -> list[Path]:
    """Unpack a tar or zip ``archive`` into ``dest`` and return the files written.

    Raises:
        UnsafeArtifact: a member is unsafe (see the module docstring) or a limit is passed.
        InvalidInput: the archive is not a readable tar or zip.
    """
    kind = is_archive(archive)
    if kind is None:
        raise InvalidInput(f"{archive.name} is not a tar or zip archive")
    limits = _Limits(max_total_bytes, max_members, max_ratio, archive.stat().st_size)
    writer = _Writer(dest)
    try:
        if kind == "zip":
            _extract_zip(archive, writer, limits)
        else:
            _extract_tar(archive, writer, limits)
    except BaseException as exc:
        writer.undo()
        if _is_corrupt(exc):
            raise InvalidInput(f"{archive.name} is not a readable {kind} archive: {exc}") from exc
        raise
    return list(writer.files)


@dataclass
class _Limits:
    max_total_bytes: int
    max_members: int
    max_ratio: float
    packed_bytes: int
    written: int = 0
    members: int = 0

    def count_member(self, name: str) -> None:
        self.members += 1
        if self.members > self.max_members:
            raise UnsafeArtifact(
                f"archive member {name!r}: the archive has more than {self.max_members} members"
            )

    def check_ratio(self, name: str, unpacked: int, packed: int) -> None:
        if unpacked > _RATIO_FLOOR_BYTES and unpacked > self.max_ratio * max(packed, 1):
            raise UnsafeArtifact(
                f"archive member {name!r}: compression ratio above {self.max_ratio:g} "
                "(a decompression bomb?)"
            )

    def count_written(self, name: str, n: int, member_written: int, member_packed: int) -> None:
        self.written += n
        if self.written > self.max_total_bytes:
            raise UnsafeArtifact(
                f"archive member {name!r}: unpacked size exceeds the limit of "
                f"{self.max_total_bytes} bytes"
            )
        self.check_ratio(name, member_written, member_packed)
        self.check_ratio(name, self.written, self.packed_bytes)


@dataclass
class _Writer:
    """Creates files and folders under ``dest`` and remembers them for :meth:`undo`."""

    dest: Path
    files: list[Path] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)
    seen: dict[PurePosixPath, bool] = field(default_factory=dict)

    def claim(self, name: str, rel: PurePosixPath, is_dir: bool) -> None:
        """Refuse duplicates and a file that would also be a folder (or the reverse)."""
        for parent in list(rel.parents)[:-1]:
            if self.seen.setdefault(parent, True) is False:
                raise UnsafeArtifact(f"archive member {name!r}: a parent folder is also a file")
        previous = self.seen.get(rel)
        if previous is not None and not (previous and is_dir):
            raise UnsafeArtifact(f"archive member {name!r}: appears more than once")
        self.seen[rel] = is_dir

    def make_dir(self, name: str, rel: PurePosixPath) -> Path:
        if not self.dest.exists():
            self.dest.mkdir(parents=True)
            self.dirs.append(self.dest)
        current = self.dest
        for part in rel.parts:
            current = current / part
            if current.is_symlink() or (current.exists() and not current.is_dir()):
                raise UnsafeArtifact(f"archive member {name!r}: {part!r} is not a folder")
            if not current.exists():
                try:
                    current.mkdir()
                except OSError as exc:
                    if exc.errno in _SERVER_ERRNOS:
                        raise
                    raise _member_error(name, exc) from exc
                self.dirs.append(current)
        return current

    def write(self, name: str, rel: PurePosixPath, chunks: Iterator[bytes]) -> None:
        target = self.make_dir(name, rel.parent) / rel.name
        # O_EXCL | O_NOFOLLOW: never write through something already at the target.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            fd = os.open(target, flags, 0o644)
        except OSError as exc:
            if exc.errno in _SERVER_ERRNOS:
                raise
            raise _member_error(name, exc) from exc
        self.files.append(target)
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)

    def undo(self) -> None:
        for path in reversed(self.files):
            with contextlib.suppress(OSError):
                path.unlink()
        for path in reversed(self.dirs):
            with contextlib.suppress(OSError):
                path.rmdir()
        self.files.clear()
        self.dirs.clear()


def _is_corrupt(exc: BaseException) -> bool:
    if isinstance(exc, (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error)):
        return True
    # Decompressors report corrupt data as OSError without an errno (LZMAError is one);
    # an errno means the server's own file system failed.
    return isinstance(exc, OSError) and exc.errno is None


def _member_error(name: str, exc: OSError) -> UnsafeArtifact:
    """A member the file system will not take (name too long, a folder in the way)."""
    return UnsafeArtifact(f"archive member {name!r}: cannot be written ({exc.strerror})")


def _member_path(name: str) -> PurePosixPath:
    """Validate a member name and return it relative to the archive root."""
    if not name or "\x00" in name:
        raise UnsafeArtifact(f"archive member {name!r}: empty name or NUL byte")
    if "\\" in name:
        raise UnsafeArtifact(f"archive member {name!r}: backslash in the path")
    path = PurePosixPath(name)
    if path.is_absolute():
        raise UnsafeArtifact(f"archive member {name!r}: absolute path")
    if ".." in path.parts:
        raise UnsafeArtifact(f"archive member {name!r}: path escapes the archive ('..')")
    return PurePosixPath(*[part for part in path.parts if part != "."])


def _copy_stream(name: str, source: IO[bytes], limits: _Limits, packed: int) -> Iterator[bytes]:
    written = 0
    while chunk := source.read(_CHUNK):
        written += len(chunk)
        limits.count_written(name, len(chunk), written, packed)
        yield chunk


def _extract_zip(archive: Path, writer: _Writer, limits: _Limits) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            # The central directory already says so; no need to unpack the first members.
            raise UnsafeArtifact(
                f"archive member {infos[limits.max_members].filename!r}: the archive has "
                f"more than {limits.max_members} members"
            )
        for info in infos:
            name = info.filename
            limits.count_member(name)
            rel = _member_path(name)
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)
            if kind == stat.S_IFLNK:
                raise UnsafeArtifact(f"archive member {name!r}: symbolic links are refused")
            if info.is_dir() or kind == stat.S_IFDIR:
                writer.claim(name, rel, is_dir=True)
                writer.make_dir(name, rel)
                continue
            if kind not in (0, stat.S_IFREG):
                raise UnsafeArtifact(f"archive member {name!r}: not a regular file")
            if info.flag_bits & 0x1:
                raise UnsafeArtifact(f"archive member {name!r}: encrypted members are refused")
            if not rel.parts:
                raise UnsafeArtifact(f"archive member {name!r}: empty path")
            writer.claim(name, rel, is_dir=False)
            with zf.open(info) as source:
                writer.write(name, rel, _copy_stream(name, source, limits, info.compress_size))


def _extract_tar(archive: Path, writer: _Writer, limits: _Limits) -> None:
    with _open_decompressed(archive) as raw:
        stream = _BoundedReader(raw, limits, archive.name)
        # Stream mode ("r|"): members are read in order, never seeking or buffering the
        # whole decompressed archive.
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            for member in tf:
                name = member.name
                limits.count_member(name)
                rel = _member_path(name)
                if member.issym() or member.islnk():
                    raise UnsafeArtifact(f"archive member {name!r}: links are refused")
                if member.isdir():
                    if rel.parts:
                        writer.claim(name, rel, is_dir=True)
                        writer.make_dir(name, rel)
                    continue
                if not member.isreg():
                    raise UnsafeArtifact(
                        f"archive member {name!r}: devices, FIFOs and other special files "
                        "are refused"
                    )
                if not rel.parts:
                    raise UnsafeArtifact(f"archive member {name!r}: empty path")
                writer.claim(name, rel, is_dir=False)
                source = tf.extractfile(member)
                if source is None:
                    raise UnsafeArtifact(f"archive member {name!r}: unreadable file")
                with source:
                    # The tar stream as a whole is ratio-checked by _BoundedReader.
                    writer.write(name, rel, _copy_stream(name, source, limits, member.size))


class _BoundedReader:
    """A read-only stream that stops a decompressor producing more than the limits allow.

    Tar headers (PAX records in particular) are read into memory by :mod:`tarfile`, so
    the limit applies to the decompressed stream itself, not only to member data.
    """

    def __init__(self, inner: io.BufferedIOBase, limits: _Limits, archive_name: str) -> None:
        self._inner = inner
        self._limits = limits
        self._archive_name = archive_name
        self._budget = limits.max_total_bytes + _TAR_OVERHEAD_PER_MEMBER * (limits.max_members + 2)
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            parts = []
            while part := self.read(_CHUNK):
                parts.append(part)
            return b"".join(parts)
        chunk = self._inner.read(size)
        self.read_bytes += len(chunk)
        if self.read_bytes > self._budget:
            raise UnsafeArtifact(
                f"archive {self._archive_name!r}: unpacked size exceeds the limit of "
                f"{self._limits.max_total_bytes} bytes"
            )
        self._limits.check_ratio(self._archive_name, self.read_bytes, self._limits.packed_bytes)
        return chunk

    def tell(self) -> int:
        return self.read_bytes

    def seek(self, pos: int, /) -> int:
        raise io.UnsupportedOperation("the tar stream is read once, in order")

    def write(self, b: bytes, /) -> int:
        raise io.UnsupportedOperation("the tar stream is read-only")

    def close(self) -> None:
        self._inner.close()


def _open_decompressed(path: Path) -> io.BufferedIOBase:
    with path.open("rb") as probe:
        head = probe.read(len(_XZ_MAGIC))
    if head.startswith(_GZIP_MAGIC):
        return gzip.open(path, "rb")
    if head.startswith(_BZ2_MAGIC):
        return bz2.open(path, "rb")
    if head.startswith(_XZ_MAGIC):
        return lzma.open(path, "rb")
    return path.open("rb")


__all__ = ["ArchiveKind", "is_archive", "safe_extract"]
