"""Reference counting of content-addressed blobs through the ``blob_refs`` table."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import delete, event, select
from sqlalchemy.orm import Session

from modelyard.db.tables import BlobRef, Dataset, Job, ModelVersion
from modelyard.storage.base import BlobStore

_ADDRESS = re.compile(r"[0-9a-f]{64}")
_UNFINISHED = ("queued", "running")
# Where a session keeps the blobs it may delete once it commits.
_PENDING = "modelyard.unreferenced"

log = logging.getLogger("modelyard.storage.refs")


def add_refs(session: Session, ref_type: str, ref_id: str, hashes: Iterable[str]) -> None:
    for sha in set(hashes):
        session.merge(BlobRef(sha256=sha, ref_type=ref_type, ref_id=ref_id))


def drop_refs(session: Session, ref_type: str, ref_id: str) -> list[str]:
    """Remove a record's references; returns the hashes it held."""
    hashes = list(
        session.scalars(
            select(BlobRef.sha256).where(BlobRef.ref_type == ref_type, BlobRef.ref_id == ref_id)
        )
    )
    session.execute(delete(BlobRef).where(BlobRef.ref_type == ref_type, BlobRef.ref_id == ref_id))
    return hashes


def delete_unreferenced(session: Session, blobs: BlobStore, hashes: Iterable[str]) -> None:
    """Once ``session`` commits, delete those of ``hashes`` that no record uses any more.

    Nothing is deleted before the commit: a transaction that rolls back, or a process killed
    before its commit, leaves its records pointing at blobs that still exist. After the
    commit the references are read again in a new session, and a blob an upload renewed
    since then survives (:meth:`BlobStore.delete_if_written_before`).
    """
    wanted = set(hashes)
    if not wanted:
        return
    pending: list[tuple[BlobStore, set[str]]] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        event.listen(session, "after_commit", _delete_pending)
        event.listen(session, "after_rollback", _forget_pending)
    pending.append((blobs, wanted))


def _forget_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _delete_pending(session: Session) -> None:
    pending: list[tuple[BlobStore, set[str]]] = session.info.pop(_PENDING, [])
    if not pending:
        return
    try:
        with Session(session.get_bind()) as fresh:
            for blobs, hashes in pending:
                # A blob renewed by an upload after this instant is kept whatever is read.
                checked_at = time.time()
                used = set(fresh.scalars(select(BlobRef.sha256).where(BlobRef.sha256.in_(hashes))))
                for sha in hashes - used:
                    blobs.delete_if_written_before(sha, checked_at)
    except Exception:
        # The commit stands; the storage collector removes what is left unreferenced.
        log.exception("deleting unreferenced blobs after a commit failed")


def referenced_digests(session: Session) -> set[str]:
    """Every blob address some record uses.

    ``blob_refs`` is the record of use; the columns that hold addresses are read as well
    (versions, data sets' originals and canonical files, job checkpoints, and whatever an
    unfinished job's spec names, such as the weights a fine-tune starts from), so a blob
    whose reference row is missing is still kept.
    """
    found = set(session.scalars(select(BlobRef.sha256)))
    found.update(session.scalars(select(ModelVersion.sha256)))
    found.update(session.scalars(select(Job.checkpoint_sha).where(Job.checkpoint_sha.is_not(None))))
    for originals, canonical in session.execute(select(Dataset.originals, Dataset.canonical)):
        found.update(_addresses(originals))
        found.update(_addresses(canonical))
    for spec in session.scalars(select(Job.spec).where(Job.status.in_(_UNFINISHED))):
        found.update(_addresses(spec))
    return {sha for sha in found if sha}


def _addresses(value: Any) -> Iterator[str]:
    """Every sha256 hex string inside a JSON value."""
    if isinstance(value, str):
        if _ADDRESS.fullmatch(value):
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _addresses(item)
    elif isinstance(value, list):
        for item in value:
            yield from _addresses(item)
