"""The collection pass: working files no live process owns, and blobs no record references.

A crash between storing a blob and writing the record that references it (an upload, a
data set's canonical files, a trained model, a checkpoint) leaves a blob nothing uses; a
killed process leaves its working folder. One pass removes both:

1. the tmp dir is swept (:func:`modelyard.storage.workdirs.sweep`);
2. the store is listed, *then* the references are read, so every record written before the
   listing is seen;
3. a blob no record references is deleted only if it was last written more than
   ``grace_s`` ago. An upload in flight has stored its blob (or renewed the identical one
   already stored) moments before it writes its record, so its blob is young and survives.

The server runs a pass when it starts and then every ``collect_interval_s``; several server
processes sharing a store may each run theirs.

Example::

    collector = StorageCollector(db, blobs, settings.tmp_dir, grace_s=3600)
    report = collector.run_once()
    report.blobs_deleted   # addresses of the blobs that went
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from modelyard.db.engine import Database
from modelyard.storage.base import BlobStore
from modelyard.storage.refs import referenced_digests
from modelyard.storage.workdirs import sweep

log = logging.getLogger("modelyard.storage.collector")


@dataclass(frozen=True)
class CollectionReport:
    """What one pass removed, and what it kept only because it was too young."""

    tmp_entries: int
    """Entries removed from the tmp dir (working folders of ended processes, leftovers)."""
    blobs_deleted: tuple[str, ...]
    """Addresses of the unreferenced blobs deleted."""
    blobs_in_grace: int
    """Unreferenced blobs kept because they were written within the grace period."""


class StorageCollector:
    """Runs collection passes over one blob store and one tmp dir, once or periodically."""

    def __init__(self, db: Database, blobs: BlobStore, tmp_dir: Path, grace_s: float) -> None:
        self._db = db
        self._blobs = blobs
        self._tmp_dir = tmp_dir
        self._grace_s = grace_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> CollectionReport:
        """One pass: sweep the tmp dir, then delete unreferenced blobs past the grace period."""
        swept = sweep(self._tmp_dir)
        listed = list(self._blobs.list_blobs())
        with self._db.session() as session:
            referenced = referenced_digests(session)
        cutoff = time.time() - self._grace_s
        deleted: list[str] = []
        young = 0
        for blob in listed:
            if blob.sha256 in referenced:
                continue
            if blob.written_at >= cutoff:
                young += 1
            elif self._blobs.delete_if_written_before(blob.sha256, cutoff):
                deleted.append(blob.sha256)
            else:
                young += 1  # renewed by an upload since it was listed
        if swept or deleted:
            log.info("collected %d unreferenced blobs and %d tmp entries", len(deleted), swept)
        return CollectionReport(swept, tuple(deleted), young)

    def start(self, interval_s: float) -> None:
        """Run a pass now and then every ``interval_s`` seconds (0: only now), in a thread."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(interval_s,), name="storage-collector", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the periodic passes (waits for a pass in progress to end)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def _loop(self, interval_s: float) -> None:
        while True:
            try:
                self.run_once()
            except Exception:
                log.exception("collection pass failed")
            if interval_s <= 0 or self._stop.wait(interval_s):
                return
