"""The blob store contract: content-addressed, streamed, atomic.

A blob is named by the sha256 of its plaintext. Writers stage bytes in a temporary file
(hashing as they go), then hand the file to :meth:`BlobStore.put_file`, which makes it
visible atomically: a reader never sees a half-written blob, and a crash mid-upload leaves
nothing behind but a temporary file.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CHUNK_SIZE = 1024 * 1024
# Downloads are sent in larger pieces: fewer thread hand-offs and socket writes per GiB.
DOWNLOAD_CHUNK_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True)
class BlobInfo:
    """What the store knows of a blob: its address and its plaintext size in bytes."""

    sha256: str
    size: int


class BlobStore(abc.ABC):
    """Where artifacts and data sets live (local directory or S3), optionally encrypted."""

    @abc.abstractmethod
    def put_file(self, path: Path, sha256: str | None = None, *, trusted: bool = False) -> BlobInfo:
        """Store the file at ``path`` (consuming it) and return its address.

        ``sha256``, when given, is checked against the file's content; a mismatch raises
        :class:`modelyard.errors.InvalidInput` and stores nothing. With ``trusted`` the
        caller vouches for ``sha256`` (it hashed the bytes as it wrote them), which saves
        reading a large file a second time.
        """

    @abc.abstractmethod
    def open_stream(self, sha256: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Yield the blob's plaintext in chunks; raises NotFound when it does not exist."""

    @abc.abstractmethod
    def exists(self, sha256: str) -> bool:
        """Whether the blob is stored."""

    @abc.abstractmethod
    def size(self, sha256: str) -> int:
        """Plaintext size of the blob in bytes; raises NotFound when it does not exist."""

    @abc.abstractmethod
    def delete(self, sha256: str) -> None:
        """Remove the blob; deleting a missing blob is not an error."""

    def local_path(self, sha256: str) -> Path | None:
        """A plaintext file of the blob on this machine if one exists (for memory-mapping)."""
        return None

    def fetch_to(self, sha256: str, dest: Path) -> Path:
        """Write the blob's plaintext to ``dest`` (atomically) and return ``dest``."""
        chunks = self.open_stream(sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        try:
            with part.open("wb") as out:
                for chunk in chunks:
                    out.write(chunk)
            part.replace(dest)
        finally:
            # A failed read (missing, damaged or unreachable blob) leaves no partial file.
            part.unlink(missing_ok=True)
        return dest
