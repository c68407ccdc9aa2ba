"""The data-set service called directly, on SQLite and PostgreSQL: intake, listing, download,
deletion, the versions trained on a data set, sharing, and the errors behind 404, 409 and 422."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.services import Services

from modelyard.auth.acl import AclEntry
from modelyard.db.engine import Database
from modelyard.errors import Conflict, Forbidden, InvalidInput, NotFound


@pytest.fixture
def world(migrated_db: Database, tmp_path: Path) -> Services:
    return Services(migrated_db, tmp_path)


def test_a_table_is_taken_in_listed_downloaded_and_deleted(world: Services) -> None:
    ana = world.caller("ana")
    source = world.csv()
    row = world.datasets.create(
        ana, name="iris", uploads=[world.stage(source)], label="y", description="flowers"
    )
    assert (row.format, row.num_rows, row.label, row.description) == ("csv", 30, "y", "flowers")
    assert row.owner_id == ana.principal_id
    world.datasets.create(ana, name="iris-copy", uploads=[world.stage(source)], label="y")

    rows, total = world.datasets.list_datasets(ana, limit=10, offset=0)
    assert total == 2 and [r.name for r in rows] == ["iris", "iris-copy"]
    rows, total = world.datasets.list_datasets(ana, limit=1, offset=1)
    assert (total, [r.name for r in rows]) == (2, ["iris-copy"])
    found, chunks, filename = world.datasets.download(ana, "iris")
    assert found.id == row.id and filename == "iris.csv"
    assert b"".join(chunks) == source.read_bytes()
    canonical = world.datasets.canonical_files(row, world.root / "canonical")
    assert canonical and all(path.exists() for path in canonical.values())

    world.datasets.delete(ana, "iris")
    with pytest.raises(NotFound, match="iris"):
        world.datasets.get(ana, "iris")
    # The copy holds the same original bytes; deleting one keeps what the other uses.
    _, chunks, _ = world.datasets.download(ana, "iris-copy")
    assert b"".join(chunks) == source.read_bytes()


def test_a_taken_name_is_a_conflict_and_nothing_is_stored(world: Services) -> None:
    ana = world.caller("ana")
    world.datasets.create(ana, name="iris", uploads=[world.stage(world.csv())], label="y")
    upload = world.stage(world.csv("other.csv"))
    with pytest.raises(Conflict) as taken:
        world.datasets.create(ana, name="iris", uploads=[upload], label="y")
    assert taken.value.status == 409
    assert not upload.path.exists()
    assert world.datasets.list_datasets(ana, limit=10, offset=0)[1] == 1


def test_bad_input_is_refused_with_what_is_wrong(world: Services) -> None:
    ana = world.caller("ana")
    with pytest.raises(InvalidInput, match="format must be one of"):
        world.datasets.create(ana, name="iris", uploads=[world.stage(world.csv())], fmt="xls")
    with pytest.raises(InvalidInput):
        world.datasets.create(ana, name="no such name!", uploads=[world.stage(world.csv())])
    with pytest.raises(InvalidInput, match="'nope'"):
        world.datasets.create(ana, name="iris", uploads=[world.stage(world.csv())], label="nope")
    with pytest.raises(NotFound) as missing:
        world.datasets.get(ana, "iris")
    assert missing.value.status == 404


def test_the_versions_trained_on_a_data_set_are_its_lineage(world: Services) -> None:
    ana, bob = world.caller("ana"), world.caller("bob")
    data = world.datasets.create(ana, name="iris", uploads=[world.stage(world.csv())], label="y")
    world.push(ana, "iris-mlp", dataset_id=data.id)
    world.push(ana, "iris-mlp", dataset_id=data.id, parent_version=1)
    world.push(ana, "unrelated")
    world.datasets.acl.set(ana, "iris", public=True, grants=[])
    world.push(bob, "bobs-mlp", dataset_id=data.id)

    trained = world.registry.versions_trained_on(ana, data.id, limit=10)
    assert sorted((name, v.version) for name, v in trained) == [("iris-mlp", 1), ("iris-mlp", 2)]
    # Bob's model is private: ana does not see it; bob sees only his own.
    trained = world.registry.versions_trained_on(bob, data.id, limit=10)
    assert [(name, v.version) for name, v in trained] == [("bobs-mlp", 1)]


def test_sharing_a_data_set_with_a_user_or_everyone(world: Services) -> None:
    ana, bob = world.caller("ana"), world.caller("bob")
    world.datasets.create(ana, name="iris", uploads=[world.stage(world.csv())], label="y")
    with pytest.raises(NotFound):
        world.datasets.get(bob, "iris")

    acl = world.datasets.acl.set(ana, "iris", public=False, grants=[AclEntry("bob", "read")])
    assert acl.grants == [AclEntry("bob", "read")]
    assert world.datasets.get(bob, "iris").name == "iris"
    with pytest.raises((Forbidden, NotFound)):
        world.datasets.delete(bob, "iris")
    with pytest.raises(Forbidden):
        world.datasets.acl.set(bob, "iris", public=True, grants=[])
    with pytest.raises(InvalidInput, match="'admin'"):
        world.datasets.acl.set(ana, "iris", public=False, grants=[AclEntry("bob", "admin")])

    world.datasets.acl.set(ana, "iris", public=False, grants=[AclEntry("bob", "write")])
    world.datasets.delete(bob, "iris")
    with pytest.raises(NotFound):
        world.datasets.get(ana, "iris")


def test_an_admin_sees_and_shares_every_data_set(world: Services) -> None:
    ana = world.caller("ana")
    world.datasets.create(ana, name="iris", uploads=[world.stage(world.csv())], label="y")
    assert world.datasets.get(world.admin, "iris").owner_id == ana.principal_id
    acl = world.datasets.acl.set(world.admin, "iris", public=True, grants=[])
    assert acl.public and world.datasets.acl.get(ana, "iris").public
