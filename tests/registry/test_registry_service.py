"""The model registry called directly, on SQLite and PostgreSQL: models, versions, lineage,
aliases, sharing, and the errors an interface turns into 404, 409 and 422."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.services import SPEC, Services

from modelyard.auth.acl import AclEntry
from modelyard.db.engine import Database
from modelyard.errors import Conflict, Forbidden, InvalidInput, NotFound


@pytest.fixture
def world(migrated_db: Database, tmp_path: Path) -> Services:
    return Services(migrated_db, tmp_path)


def test_models_are_created_listed_found_and_deleted(world: Services) -> None:
    ana = world.caller("ana")
    world.registry.create_model(ana, "iris", task="classification", description="flowers")
    world.registry.create_model(ana, "digits")

    rows, total = world.registry.list_models(ana, limit=10, offset=0)
    assert total == 2 and [r.name for r in rows] == ["iris", "digits"]
    rows, total = world.registry.list_models(ana, limit=10, offset=0, search="dig")
    assert (total, [r.name for r in rows]) == (1, ["digits"])
    model = world.registry.get_model(ana, "iris")
    assert (model.task, model.description, model.owner_id) == (
        "classification",
        "flowers",
        ana.principal_id,
    )

    world.registry.delete_model(ana, "iris")
    with pytest.raises(NotFound, match="no model named 'iris'"):
        world.registry.get_model(ana, "iris")
    assert world.registry.list_models(ana, limit=10, offset=0)[1] == 1


def test_a_taken_name_is_a_conflict_and_a_missing_one_not_found(world: Services) -> None:
    ana = world.caller("ana")
    world.registry.create_model(ana, "iris")
    with pytest.raises(Conflict) as taken:
        world.registry.create_model(ana, "iris")
    assert taken.value.status == 409
    with pytest.raises(NotFound) as missing:
        world.registry.get_version(ana, "nowhere", "1")
    assert missing.value.status == 404
    world.push(ana, "iris")
    with pytest.raises(NotFound, match="'7'"):
        world.registry.get_version(ana, "iris", "7")
    with pytest.raises(InvalidInput):
        world.registry.create_model(ana, "not a name!")


def test_pushed_versions_are_numbered_checked_and_deleted(world: Services) -> None:
    ana = world.caller("ana")
    first = world.push(ana, "iris", seed=0, metrics={"accuracy": 0.9})
    second = world.push(ana, "iris", seed=1)
    assert (first.version, second.version) == (1, 2)
    assert first.format == "safetensors" and first.spec is not None
    assert {k: first.spec[k] for k in SPEC} == SPEC
    assert first.signature is not None and first.signature["inputs"][0]["shape"] == [-1, 4]
    assert world.registry.get_version(ana, "iris", "latest").version == 2
    assert world.registry.get_version(ana, "iris", "1").metrics == {"accuracy": 0.9}
    versions, total = world.registry.list_versions(ana, "iris", limit=10, offset=0)
    assert total == 2 and [v.version for v in versions] == [1, 2]

    world.registry.delete_version(ana, "iris", "2")
    assert world.registry.get_version(ana, "iris", "latest").version == 1
    assert not world.blobs.exists(second.sha256)
    assert world.blobs.exists(first.sha256)


def test_lineage_links_versions_to_their_parents_and_data_set(world: Services) -> None:
    ana = world.caller("ana")
    data = world.datasets.create(
        ana, name="iris-data", uploads=[world.stage(world.csv())], fmt="csv", label="y"
    )
    world.push(ana, "iris", dataset_id=data.id)
    world.push(ana, "iris", parent_version=1, dataset_id=data.id)
    world.push(ana, "iris-small", parent_version=1, parent_model="iris")

    trained = world.registry.versions_trained_on(ana, data.id, limit=10)
    assert sorted((name, v.version) for name, v in trained) == [("iris", 1), ("iris", 2)]
    children = world.registry.children_of(ana, "iris", 1)
    assert [(name, v.version) for name, v in children] == [("iris", 2), ("iris-small", 1)]
    small = world.registry.get_version(ana, "iris-small", "1")
    assert (small.parent_model, small.parent_version) == ("iris", 1)
    assert world.registry.children_of(ana, "iris", 2) == []


def test_a_parent_that_does_not_exist_is_refused_and_nothing_is_stored(world: Services) -> None:
    ana = world.caller("ana")
    world.push(ana, "iris")
    with pytest.raises(NotFound):
        world.push(ana, "iris", parent_version=5)
    assert world.registry.get_version(ana, "iris", "latest").version == 1


def test_aliases_point_at_versions_and_move(world: Services) -> None:
    ana = world.caller("ana")
    world.push(ana, "iris", seed=0)
    world.push(ana, "iris", seed=1)
    world.registry.set_alias(ana, "iris", "production", 1)
    assert world.registry.get_version(ana, "iris", "production").version == 1
    world.registry.set_alias(ana, "iris", "production", 2)
    assert world.registry.aliases(ana, "iris") == {"production": 2}
    assert world.registry.resolve("iris", "production").version == 2

    with pytest.raises(Conflict, match="production"):
        world.registry.delete_version(ana, "iris", "2")
    with pytest.raises(InvalidInput, match="reserved"):
        world.registry.set_alias(ana, "iris", "latest", 1)
    with pytest.raises(NotFound):
        world.registry.set_alias(ana, "iris", "staging", 9)

    world.registry.delete_alias(ana, "iris", "production")
    assert world.registry.aliases(ana, "iris") == {}
    with pytest.raises(NotFound, match="no alias 'production'"):
        world.registry.delete_alias(ana, "iris", "production")


def test_sharing_a_model_lets_another_user_read_it_but_not_share_it(world: Services) -> None:
    ana, bob = world.caller("ana"), world.caller("bob")
    world.push(ana, "iris")
    with pytest.raises(NotFound):
        world.registry.get_model(bob, "iris")
    assert world.registry.list_models(bob, limit=10, offset=0)[1] == 0

    acl = world.registry.acl.set(ana, "iris", public=False, grants=[AclEntry("bob", "read")])
    assert acl.grants == [AclEntry("bob", "read")] and not acl.public
    assert world.registry.get_version(bob, "iris", "1").version == 1
    assert world.registry.acl.get(bob, "iris") == acl
    with pytest.raises(Forbidden):
        world.registry.acl.set(bob, "iris", public=True, grants=[])
    with pytest.raises((Forbidden, NotFound)):
        world.registry.delete_model(bob, "iris")
    with pytest.raises(InvalidInput, match="no principal named 'zed'"):
        world.registry.acl.set(ana, "iris", public=False, grants=[AclEntry("zed", "read")])

    world.registry.acl.set(ana, "iris", public=False, grants=[])
    with pytest.raises(NotFound):
        world.registry.get_model(bob, "iris")
    world.registry.acl.set(ana, "iris", public=True, grants=[])
    assert world.registry.get_model(bob, "iris").public
