"""The blob store contract: content-addressed, streamed, atomic.

A blob is named by the sha256 of its plaintext. Writers stage bytes in a temporary file
(hashing as they go), then hand the file to :meth:`BlobStore.put_file`, which makes it
visible atomically: a reader never sees a half-written blob, and a crash mid-upload leaves
nothing behind but a temporary file.

A blob is stored before the record that references it is written, so a crash in between
leaves a blob nothing references. The collection pass
(:class:`modelyard.storage.collector.BlobCollector`) deletes those once they have not been
written for a grace period; :meth:`BlobStore.put_file` of content that is already stored
counts as a write, so a blob an upload is about to reference again is never collected.
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


@dataclass(frozen=True)
class StoredBlob:
    """A blob as listed by its store: its address and when it was last written (Unix time)."""

    sha256: str
    written_at: float


class BlobStore(abc.ABC):
    """Where artifacts and data sets live (local directory or S3), optionally encrypted."""

    @abc.abstractmethod
    def put_file(self, path: Path, sha256: str | None = None, *, trusted: bool = False) -> BlobInfo:
        """Store the file at ``path`` (consuming it) and return its address.

        ``sha256``, when given, is checked against the file's content; a mismatch raises
        :class:`modelyard.errors.InvalidInput` and stores nothing. With ``trusted`` the
        caller vouches for ``sha256`` (it hashed the bytes as it wrote them), which saves
        reading a large file a second time. Content that is already stored is not written
        again, but its write time is renewed (see :meth:`delete_if_written_before`).
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

    @abc.abstractmethod
    def list_blobs(self) -> Iterator[StoredBlob]:
        """Every stored blob with its last write time, in no particular order."""

    @abc.abstractmethod
    def delete_if_written_before(self, sha256: str, cutoff: float) -> bool:
        """Delete the blob if it was last written before ``cutoff``; whether it was deleted.

        A :meth:`put_file` of the same content that renews the write time while this runs
        either keeps the blob or finds it gone and writes it again.
        """

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
