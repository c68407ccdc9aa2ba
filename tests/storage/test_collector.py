"""The collection pass over every backend: what no record references goes, after a grace
period; what a record references, or an upload has just written, stays."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.db.engine import Database, create_database
from modelyard.db.migrate import upgrade_to_head
from modelyard.db.tables import BlobRef, Dataset, Job, Model, ModelVersion, Principal
from modelyard.storage.collector import StorageCollector
from modelyard.storage.refs import referenced_digests
from modelyard.storage.workdirs import current_owner
from tests.storage.cases import Case, sample


def _db(url: str) -> Iterator[Database]:
    db = create_database(url)
    upgrade_to_head(db.engine)
    try:
        yield db
    finally:
        db.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    yield from _db(f"sqlite:///{tmp_path / 'meta.db'}")


@pytest.fixture
def any_db(database_url: str) -> Iterator[Database]:
    yield from _db(database_url)


def _written_at(case: Case, sha: str) -> float:
    return next(b.written_at for b in case.store.list_blobs() if b.sha256 == sha)


def _addr(n: int) -> str:
    return f"{n:064x}"


def _record_uses(db: Database, *, ref: str, checkpoint: str, fine_tune_from: str) -> None:
    with db.session() as session:
        owner = Principal(name="owner")
        session.add(owner)
        session.flush()
        session.add(BlobRef(sha256=ref, ref_type="dataset", ref_id="d1"))
        session.add(Job(type="train", owner_id=owner.id, spec={}, checkpoint_sha=checkpoint))
        spec = {"init": {"sha256": fine_tune_from, "version": 1}}
        session.add(Job(type="train", status="queued", owner_id=owner.id, spec=spec))


def test_listing_and_deleting_only_what_was_written_before_a_cutoff(case: Case) -> None:
    a = case.store.put_file(case.stage(sample(1000))).sha256
    b = case.store.put_file(case.stage(sample(2000))).sha256

    listed = {blob.sha256: blob.written_at for blob in case.store.list_blobs()}

    assert listed.keys() == {a, b}
    assert all(at <= time.time() for at in listed.values())
    assert not case.store.delete_if_written_before(a, listed[a])
    assert case.store.delete_if_written_before(a, listed[a] + 1)
    assert not case.store.exists(a) and case.store.exists(b)
    assert not case.store.delete_if_written_before(a, time.time() + 60)
    assert [blob.sha256 for blob in case.store.list_blobs()] == [b]


def test_storing_stored_content_again_renews_it(case: Case) -> None:
    data = sample(5000)
    sha = case.store.put_file(case.stage(data)).sha256
    first = _written_at(case, sha)
    # S3 keeps LastModified in whole seconds: let the clock pass the next one.
    while time.time() < first + 1.1:
        time.sleep(0.05)

    again = case.store.put_file(case.stage(data))

    assert again.sha256 == sha and again.size == len(data)
    assert _written_at(case, sha) > first
    assert not case.store.delete_if_written_before(sha, first + 0.5)
    assert b"".join(case.store.open_stream(sha)) == data
    assert case.store.size(sha) == len(data)


def test_a_pass_deletes_unreferenced_blobs_past_the_grace_period(
    case: Case, sqlite_db: Database
) -> None:
    kept = {case.store.put_file(case.stage(sample(100 + n))).sha256 for n in range(3)}
    ref, checkpoint, fine_tune_from = sorted(kept)
    _record_uses(sqlite_db, ref=ref, checkpoint=checkpoint, fine_tune_from=fine_tune_from)
    orphans = {case.store.put_file(case.stage(sample(200 + n))).sha256 for n in range(2)}
    dead = case.tmp_dir / f"proc-{current_owner().boot}-999999999-1-{current_owner().host}"
    (dead / "job-1").mkdir(parents=True)
    (dead / "job-1" / "x.npy").write_bytes(b"left by a killed worker")

    patient = StorageCollector(sqlite_db, case.store, case.tmp_dir, grace_s=3600).run_once()

    assert patient.blobs_deleted == () and patient.blobs_in_grace == 2
    assert patient.tmp_entries == 1 and not dead.exists()
    assert {b.sha256 for b in case.store.list_blobs()} == kept | orphans

    eager = StorageCollector(sqlite_db, case.store, case.tmp_dir, grace_s=0).run_once()

    assert set(eager.blobs_deleted) == orphans
    assert {b.sha256 for b in case.store.list_blobs()} == kept
    for sha in kept:
        assert case.store.size(sha) > 0


def test_references_are_read_from_every_table_that_holds_addresses(any_db: Database) -> None:
    _record_uses(any_db, ref=_addr(1), checkpoint=_addr(2), fine_tune_from=_addr(3))
    with any_db.session() as session:
        owner = session.query(Principal).one()
        session.add(
            Dataset(
                name="d",
                owner_id=owner.id,
                format="npz",
                kind="arrays",
                schema={},
                num_rows=1,
                sha256=_addr(4),
                size=1,
                originals={"file": {"sha256": _addr(5), "filename": "d.npz"}},
                canonical={"x.npy": _addr(6)},
            )
        )
        model = Model(name="m", owner_id=owner.id)
        session.add(model)
        session.flush()
        session.add(
            ModelVersion(
                model_id=model.id,
                version=1,
                format="onnx",
                sha256=_addr(7),
                size=1,
                created_by_id=owner.id,
            )
        )
        finished = {"init": {"sha256": _addr(8)}}
        session.add(Job(type="train", status="succeeded", owner_id=owner.id, spec=finished))

    with any_db.session() as session:
        found = referenced_digests(session)

    # A data set's own sha256 names its content (a hash of both files for an IDX pair),
    # not a blob; its files are the originals and the canonical form.
    assert found == {_addr(n) for n in (1, 2, 3, 5, 6, 7)}
