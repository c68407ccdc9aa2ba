"""Reference counting of content-addressed blobs through the ``blob_refs`` table."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from modelyard.db.tables import BlobRef
from modelyard.storage.base import BlobStore


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
    """Delete those of ``hashes`` that no record uses any more."""
    for sha in set(hashes):
        still = session.scalar(select(BlobRef.sha256).where(BlobRef.sha256 == sha).limit(1))
        if still is None:
            blobs.delete(sha)
