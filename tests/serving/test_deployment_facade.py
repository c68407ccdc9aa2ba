"""The deployment facade called directly, on SQLite and PostgreSQL: a deployment's row and the
model loaded for it are created, changed and deleted together, a change that fails leaves both
as they were, and access follows the deployment's ACL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
import torch
from prometheus_client import CollectorRegistry

from modelyard.auth.acl import AclEntry
from modelyard.config import Settings
from modelyard.db.engine import Database
from modelyard.errors import Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from modelyard.nn import load_weights
from modelyard.serving.facade import DeploymentFacade
from modelyard.serving.manager import DeploymentManager
from modelyard.serving.metrics import ServingMetrics
from modelyard.serving.service import DeploymentService
from tests.support.services import Services

ROWS = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
SPEC = {"model": "iris", "runtime": "torch", "device": "cpu"}


class World(Services):
    """The services, and a facade over a deployment service and a manager of its own."""

    def __init__(self, db: Database, root: Path, settings: Settings) -> None:
        super().__init__(db, root)
        settings.tmp_dir.mkdir(parents=True, exist_ok=True)
        records = DeploymentService(db, self.registry)
        metrics = ServingMetrics(CollectorRegistry())
        manager = DeploymentManager(settings, records, self.registry, self.blobs, metrics)
        self.facade = DeploymentFacade(records, manager)

    def expected(self, seed: int) -> np.ndarray:
        """What the catalog MLP of ``seed`` computes for :data:`ROWS`, in plain PyTorch."""
        model = load_weights(None, self.weights(seed)).eval()
        with torch.no_grad():
            result: np.ndarray = model(torch.from_numpy(ROWS)).numpy()
        return result


@pytest_asyncio.fixture
async def world(
    migrated_db: Database, tmp_path: Path, make_settings: Callable[..., Settings]
) -> AsyncIterator[World]:
    world = World(migrated_db, tmp_path, make_settings())
    ana = world.caller("ana")
    world.push(ana, "iris", seed=0)
    world.push(ana, "iris", seed=1)
    try:
        yield world
    finally:
        await world.facade.manager.stop()


def _served(world: World, name: str) -> list[int]:
    live = world.facade.manager.status(name)
    return [] if live is None else [served.number for served, _ in live.routes]


async def _answer(world: World, name: str, **kwargs: Any) -> tuple[int | None, np.ndarray]:
    result = await world.facade.infer(name, {"input": ROWS}, **kwargs)
    return result.version, result.outputs["output"]


@pytest.mark.asyncio
async def test_a_created_deployment_is_stored_and_serves(world: World) -> None:
    ana = world.caller("ana")
    row, live = await world.facade.create(ana, "digits", {**SPEC, "version": "1"})
    assert (row.name, row.owner_id, row.spec["version"]) == ("digits", ana.principal_id, "1")
    assert live.status == "ready" and _served(world, "digits") == [1]

    version, outputs = await _answer(world, "digits")
    assert version == 1
    np.testing.assert_allclose(outputs, world.expected(0), rtol=1e-5, atol=1e-5)

    stored, loaded = world.facade.get(ana, "digits")
    assert stored.id == row.id and loaded is live
    page, total = world.facade.list(ana, limit=10, offset=0)
    assert total == 1 and [(r.name, lv) for r, lv in page] == [("digits", live)]
    body = world.facade.metadata(live, None)
    assert body["versions"] == ["1"] and body["platform"] == "torch"
    assert body["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    with pytest.raises(NotFound, match="version '2'"):
        world.facade.metadata(live, "2")


@pytest.mark.asyncio
async def test_a_deployment_that_cannot_be_made_leaves_no_row_and_no_model(world: World) -> None:
    ana = world.caller("ana")
    with pytest.raises(InvalidInput, match="model"):
        await world.facade.create(ana, "digits", {**SPEC, "version": "9"})
    with pytest.raises(InvalidInput, match="max_batch_size"):
        await world.facade.create(ana, "digits", {**SPEC, "max_batch_size": 0})
    with pytest.raises(InvalidInput, match="runtime"):
        await world.facade.create(ana, "digits", {**SPEC, "runtime": "keras"})
    with pytest.raises(NotFound):
        world.facade.get(ana, "digits")
    assert world.facade.manager.status("digits") is None
    assert world.facade.list(ana, limit=10, offset=0)[1] == 0


@pytest.mark.asyncio
async def test_a_taken_name_is_a_conflict_and_the_first_goes_on(world: World) -> None:
    ana = world.caller("ana")
    await world.facade.create(ana, "digits", {**SPEC, "version": "1"})
    with pytest.raises(Conflict) as taken:
        await world.facade.create(ana, "digits", {**SPEC, "version": "2"})
    assert taken.value.status == 409
    stored, _ = world.facade.get(ana, "digits")
    assert stored.spec["version"] == "1" and _served(world, "digits") == [1]
    assert (await _answer(world, "digits"))[0] == 1


@pytest.mark.asyncio
async def test_an_update_swaps_row_and_model_together(world: World) -> None:
    ana = world.caller("ana")
    await world.facade.create(ana, "digits", {**SPEC, "version": "1"})

    row, live = await world.facade.update(ana, "digits", {"version": "2"})
    assert row.spec["version"] == "2" and _served(world, "digits") == [2]
    version, outputs = await _answer(world, "digits")
    assert version == 2
    np.testing.assert_allclose(outputs, world.expected(1), rtol=1e-5, atol=1e-5)

    with pytest.raises(InvalidInput):
        await world.facade.update(ana, "digits", {"version": "9"})
    with pytest.raises(InvalidInput, match="device"):
        await world.facade.update(ana, "digits", {"device": "tpu"})
    stored, loaded = world.facade.get(ana, "digits")
    assert stored.spec["version"] == "2" and loaded is live and _served(world, "digits") == [2]

    _, split = await world.facade.update(
        ana, "digits", {"traffic": [{"version": 1, "weight": 1}, {"version": 2, "weight": 1}]}
    )
    assert sorted(_served(world, "digits")) == [1, 2] and split.status == "ready"
    assert (await _answer(world, "digits", version="1"))[0] == 1


@pytest.mark.asyncio
async def test_a_deleted_deployment_loses_row_and_model(world: World) -> None:
    ana = world.caller("ana")
    await world.facade.create(ana, "digits", {**SPEC, "version": "1"})
    await world.facade.create(ana, "other", {**SPEC, "version": "2"})

    await world.facade.delete(ana, "digits")
    with pytest.raises(NotFound):
        world.facade.get(ana, "digits")
    assert world.facade.manager.status("digits") is None
    with pytest.raises(Unavailable):
        await world.facade.infer("digits", {"input": ROWS})
    with pytest.raises(NotFound):
        await world.facade.delete(ana, "digits")
    assert (await _answer(world, "other"))[0] == 2
    # The model and its versions stay.
    assert world.registry.get_version(ana, "iris", "latest").version == 2


@pytest.mark.asyncio
async def test_who_may_call_change_and_share_a_deployment(world: World) -> None:
    ana, bob = world.caller("ana"), world.caller("bob")
    await world.facade.create(ana, "digits", {**SPEC, "version": "1"})
    with pytest.raises(NotFound):
        await world.facade.authorize(bob, "digits")
    with pytest.raises(NotFound):
        world.facade.get(bob, "digits")
    # Bob cannot deploy what he may not read.
    with pytest.raises(InvalidInput, match="model"):
        await world.facade.create(bob, "mine", {**SPEC, "version": "1"})

    world.facade.records.acl.set(ana, "digits", public=False, grants=[AclEntry("bob", "read")])
    await world.facade.authorize(bob, "digits")
    assert world.facade.get(bob, "digits")[0].name == "digits"
    with pytest.raises((Forbidden, NotFound)):
        await world.facade.update(bob, "digits", {"version": "2"})
    with pytest.raises((Forbidden, NotFound)):
        await world.facade.delete(bob, "digits")
    assert _served(world, "digits") == [1]

    world.facade.records.acl.set(ana, "digits", public=False, grants=[])
    with pytest.raises(NotFound):
        await world.facade.authorize(bob, "digits")


@pytest.mark.asyncio
async def test_a_deployment_following_an_alias_swaps_when_it_moves(world: World) -> None:
    ana = world.caller("ana")
    world.registry.set_alias(ana, "iris", "production", 1)
    await world.facade.create(ana, "digits", {**SPEC, "version": "production"})
    await world.facade.create(ana, "pinned", {**SPEC, "version": "1"})
    assert _served(world, "digits") == [1]

    world.registry.set_alias(ana, "iris", "production", 2)
    swapped = await world.facade.follow(ana, "iris", "production", 2, forced=False)
    assert swapped == ["digits"]
    assert _served(world, "digits") == [2] and _served(world, "pinned") == [1]
    assert (await _answer(world, "digits"))[0] == 2
    # The row still names the alias; nothing was forced, so nothing is recorded on it.
    stored, _ = world.facade.get(ana, "digits")
    assert stored.spec["version"] == "production" and stored.spec["accepted"] == {}

    world.registry.set_alias(ana, "iris", "production", 1)
    await world.facade.follow(ana, "iris", "production", 1, forced=True)
    stored, _ = world.facade.get(ana, "digits")
    assert stored.spec["accepted"] == {"production": 1} and _served(world, "digits") == [1]
