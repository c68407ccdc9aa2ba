"""Blobs whose last reference is dropped go only when the transaction that dropped it commits."""

from __future__ import annotations

import pytest

from modelyard.db.engine import Database
from modelyard.storage.refs import add_refs, delete_unreferenced, drop_refs
from tests.storage.cases import Case, sample


@pytest.fixture
def db(migrated_db: Database) -> Database:
    return migrated_db


def _stored(case: Case, n: int) -> str:
    return case.store.put_file(case.stage(sample(n))).sha256


def _exists(case: Case, sha: str) -> bool:
    return any(b.sha256 == sha for b in case.store.list_blobs())


def test_a_blob_goes_when_the_transaction_dropping_its_last_reference_commits(
    db: Database, case: Case
) -> None:
    kept, shared, dropped = _stored(case, 100), _stored(case, 200), _stored(case, 300)
    with db.session() as session:
        add_refs(session, "checkpoint", "job-1", [shared, dropped])
        add_refs(session, "dataset", "d-1", [shared, kept])
    with db.session() as session:
        old = drop_refs(session, "checkpoint", "job-1")
        add_refs(session, "checkpoint", "job-1", [kept])
        session.flush()
        delete_unreferenced(session, case.store, old)
        # Not yet: the transaction may still roll back.
        assert _exists(case, dropped)
    assert not _exists(case, dropped)
    assert _exists(case, shared)  # the data set still uses it
    assert _exists(case, kept)


def test_a_transaction_that_rolls_back_or_dies_before_its_commit_deletes_nothing(
    db: Database, case: Case
) -> None:
    checkpoint = _stored(case, 100)
    with db.session() as session:
        add_refs(session, "checkpoint", "job-1", [checkpoint])

    def dies_before_its_commit() -> None:
        with db.session() as session:
            old = drop_refs(session, "checkpoint", "job-1")
            session.flush()
            delete_unreferenced(session, case.store, old)
            raise RuntimeError("killed before the commit")

    with pytest.raises(RuntimeError):
        dies_before_its_commit()
    # The record still names the checkpoint, and the checkpoint is still there to resume from.
    assert _exists(case, checkpoint)
    with db.session() as session:
        assert drop_refs(session, "checkpoint", "job-1") == [checkpoint]
        session.rollback()
    # A later commit of the same session does not act on what was rolled back.
    with db.session() as session:
        delete_unreferenced(session, case.store, [checkpoint])
        session.rollback()
        session.commit()
    assert _exists(case, checkpoint)
