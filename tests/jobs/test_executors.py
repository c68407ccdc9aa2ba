"""What both executors share: settings handed to workers, job resources, placement checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.config import Settings
from modelyard.jobs.executor import LOST_WORKER_ATTEMPTS, Executor, Exit, _Running
from modelyard.jobs.ray_executor import fits_somewhere, task_resources, worker_resources
from tests.jobs.conftest import api, server, train_body  # noqa: F401

KEY = "11" * 32


def test_workers_get_the_settings_with_their_secrets(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = make_settings(
        data_dir=Path("relative-data"),
        encryption_key=KEY,
        s3_secret_access_key="s3-secret",
        executor="ray",
        ray_address="10.0.0.1:6379",
    )
    copy = Settings.model_validate_json(settings.export_json())
    assert copy.master_key() == bytes.fromhex(KEY)
    assert copy.s3_secret_access_key is not None
    assert copy.s3_secret_access_key.get_secret_value() == "s3-secret"
    # A worker starts in another directory (a Ray worker in its own): the path is absolute.
    assert copy.data_dir == tmp_path / "relative-data"
    assert (copy.executor, copy.ray_address) == ("ray", "10.0.0.1:6379")
    # What the API or a log would show stays masked.
    assert KEY not in settings.model_dump_json()


def test_job_resources_default_to_the_server_settings(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(ray_job_cpus=2, ray_job_gpus=0)
    plain: dict[str, Any] = {"config": {"device": "auto"}}
    assert worker_resources(settings, plain) == (2.0, 0.0)
    assert worker_resources(settings, {"config": {"device": "cuda"}}) == (2.0, 1.0)
    assert worker_resources(settings, {**plain, "resources": {"cpus": 4, "gpus": 0.5}}) == (
        4.0,
        0.5,
    )
    # A distributed job's own task only coordinates: its ranks hold the resources.
    assert task_resources(settings, {**plain, "distributed": {"workers": 2}}) == (0.0, 0.0)
    assert task_resources(settings, plain) == (2.0, 0.0)


def test_placement_needs_enough_alive_nodes_with_room() -> None:
    nodes = [
        {"alive": True, "cpus": 2.0, "gpus": 0.0},
        {"alive": False, "cpus": 8.0, "gpus": 1.0},
        {"alive": True, "cpus": 4.0, "gpus": 1.0},
    ]
    assert fits_somewhere(2, 0, nodes, count=2)
    assert not fits_somewhere(2, 0, nodes, count=3)
    assert fits_somewhere(1, 1, nodes)
    assert not fits_somewhere(1, 1, nodes, count=2)  # the other GPU node is dead
    assert not fits_somewhere(6, 0, nodes)


def test_resources_are_checked_and_kept_with_the_job(api: httpx.Client) -> None:  # noqa: F811
    bad = api.post("/api/v1/jobs", json=train_body(resources={"cpus": 0}))
    assert bad.status_code == 422
    assert "resources.cpus" in bad.json()["detail"]
    unknown = api.post("/api/v1/jobs", json=train_body(resources={"tpus": 1}))
    assert unknown.status_code == 422
    assert "resources.tpus" in unknown.json()["detail"]
    job = api.post("/api/v1/jobs", json=train_body(epochs=1, resources={"cpus": 1}))
    assert job.status_code == 201, job.text
    assert job.json()["spec"]["resources"] == {"cpus": 1.0}


def test_the_executor_is_described_to_admins(api: httpx.Client) -> None:  # noqa: F811
    described = api.get("/api/v1/executor").json()
    assert described["executor"] == "local"
    assert described["slots"] == 2


class _Scripted(Executor[Exit]):
    """An executor whose workers have already ended as scripted (their handle is the end)."""

    kind = "scripted"

    def _spawn(self, job_id: str, attempt: int) -> tuple[Exit, str]:
        raise AssertionError("nothing is spawned here")

    def _exit(self, handle: Exit) -> Exit | None:
        return handle

    def _kill(self, handle: Exit) -> None:
        """Nothing runs."""


def test_a_job_whose_worker_was_lost_with_its_machine_goes_back_to_the_queue(
    make_settings: Callable[..., Settings],
) -> None:
    from sqlalchemy import select

    from modelyard.db.tables import Job, Principal
    from modelyard.platform import Platform

    platform = Platform.build(make_settings())
    try:
        platform.auth.bootstrap(None)
        with platform.db.session() as session:
            owner = session.scalars(select(Principal)).one().id
            attempts = (1, LOST_WORKER_ATTEMPTS, 1)
            jobs = [
                Job(type="train", owner_id=owner, spec={}, status="running", attempt=attempt)
                for attempt in attempts
            ]
            session.add_all(jobs)
            session.flush()
            ids = [job.id for job in jobs]
        executor = _Scripted(platform.settings, platform.db, platform.events, slots=3)
        lost = Exit(ok=False, why="the job's Ray task was lost (NodeDiedError)", lost=True)
        crashed = Exit(ok=False, why="the job's Ray task failed (ValueError)")
        ends = (lost, lost, crashed)
        for job_id, attempt, end in zip(ids, attempts, ends, strict=True):
            executor._running[job_id] = _Running(end, attempt)
        executor._reap()
        with platform.db.session() as session:
            rows = {job.id: job for job in session.scalars(select(Job))}
            assert rows[ids[0]].status == "queued"  # resumes from its checkpoint
            assert rows[ids[1]].status == "failed"  # out of attempts
            assert rows[ids[1]].error == lost.why
            assert rows[ids[2]].status == "failed"  # a failure, not a loss
        requeued = [e for e in platform.events.after(ids[0], 0, 10) if e.type == "status"]
        assert requeued[-1].data == {"status": "queued", "reason": lost.why}
    finally:
        platform.close()
