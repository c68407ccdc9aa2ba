"""Jobs on a real two-node Ray cluster, with PostgreSQL as the metadata store and S3 (moto).

The cluster (a head and one worker node, each its own ``ray start`` with its own CPUs,
temporary directory and ports, token authentication on) runs on this machine; the server
is a real ``python -m modelyard serve`` with ``MODELYARD_EXECUTOR=ray``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.jobs.conftest import TERMINAL, train_body, upload_digits, wait_event, wait_for
from tests.support.moto import FAKE_CREDENTIALS, REGION, moto_server, s3_client
from tests.support.process import ServerProcess, server_process
from tests.support.ray_cluster import RayCluster, ray_cluster
from tests.support.server import ADMIN_KEY, free_port

pytestmark = pytest.mark.slow

# A job that cannot be placed waits this long before it fails.
PLACEMENT_TIMEOUT_S = 30


def _events(api: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.get(
        f"/api/v1/jobs/{job_id}/events", params={"limit": 500}
    ).json()["items"]
    return items


def _alive_nodes(api: httpx.Client) -> list[dict[str, Any]]:
    reply = api.get("/api/v1/executor")
    assert reply.status_code == 200, reply.text
    return [n for n in reply.json()["nodes"] if n["alive"]]


def _wait_alive(api: httpx.Client, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(_alive_nodes(api)) == count:
            return
        time.sleep(0.5)
    raise AssertionError(f"the cluster never had {count} alive nodes")


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Iterator[RayCluster]:
    """Two nodes of 2 CPUs, unless the test asks for another shape (``indirect``)."""
    shape: dict[str, int] = getattr(request, "param", {"nodes": 2})
    with ray_cluster(**shape) as running:
        yield running


@pytest.fixture
def ray_env(cluster: RayCluster, pg_url: str) -> Iterator[dict[str, str]]:
    """A server's environment: the cluster, PostgreSQL and a bucket on a moto S3 server."""
    with moto_server() as endpoint:
        s3_client(endpoint).create_bucket(Bucket="ray-jobs")
        yield {
            **cluster.env,
            "MODELYARD_EXECUTOR": "ray",
            "MODELYARD_RAY_ADDRESS": cluster.address,
            "MODELYARD_RAY_PLACEMENT_TIMEOUT_S": str(PLACEMENT_TIMEOUT_S),
            "MODELYARD_DATABASE_URL": pg_url,
            "MODELYARD_BLOB_STORE": "s3",
            "MODELYARD_S3_ENDPOINT_URL": endpoint,
            "MODELYARD_S3_BUCKET": "ray-jobs",
            "MODELYARD_S3_REGION": REGION,
            "MODELYARD_S3_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
            "MODELYARD_S3_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
            "MODELYARD_JOB_HEARTBEAT_TIMEOUT_S": "20",
        }


@contextlib.contextmanager
def _server(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    with server_process(tmp_path / "data", tmp_path / "server.log", **env) as srv:
        auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=srv.url, headers=auth, timeout=60) as client:
            yield srv, client


def test_jobs_run_across_the_nodes_of_a_ray_cluster(
    ray_env: dict[str, str], cluster: RayCluster, tmp_path: Path
) -> None:
    with _server(ray_env, tmp_path) as (srv, api):
        upload_digits(api, tmp_path)
        broken = _distributed_job_and_more(api, cluster)
        srv.kill9()  # Ray stops the tasks of a dead driver
    with _server(ray_env, tmp_path) as (srv, api):
        # The next server re-queues the job; it resumes from its checkpoint on the cluster.
        done = wait_for(api, broken, timeout=300)
        assert done["status"] == "succeeded", done["error"]
        assert done["attempt"] == 2
        resumed = [e for e in _events(api, broken) if e["type"] == "resumed"]
        assert resumed
        assert resumed[0]["data"]["step"] > 0
        _node_lost_mid_job(api, cluster)
        _one_node_down(api, cluster)


def _distributed_job_and_more(api: httpx.Client, cluster: RayCluster) -> str:
    """Run jobs across both nodes; leave one running with a checkpoint and return its id."""
    described = api.get("/api/v1/executor").json()
    assert described["executor"] == "ray"
    nodes = {n["id"] for n in _alive_nodes(api)}
    assert len(nodes) == 2

    # A data-parallel job over both nodes, one rank each.
    body = train_body(
        epochs=4,
        output_model="digits-ray",
        distributed={"strategy": "ddp", "workers": 1, "nodes": 2},
    )
    job = api.post("/api/v1/jobs", json=body)
    assert job.status_code == 201, job.text
    done = wait_for(api, job.json()["id"], timeout=300)
    assert done["status"] == "succeeded", done["error"]
    events = _events(api, done["id"])
    placed = next(e for e in events if e["type"] == "placed")
    assert {p["node"] for p in placed["data"]["nodes"]} == nodes
    workers = next(e for e in events if e["type"] == "workers")
    assert {w["node"] for w in workers["data"]["workers"]} == nodes
    model = done["result"]["model"]
    version = api.get(f"/api/v1/models/{model}/versions/1").json()
    assert version["params"]["distributed"]["nodes"] == 2
    assert version["metrics"]["train_accuracy"] > 0.8

    # The version it registered (in S3, from whichever node held rank 0) is servable.
    reply = api.post("/api/v1/deployments", json={"name": "ray-mlp", "model": model})
    assert reply.status_code == 201, reply.text
    assert reply.json()["status"] == "ready"
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data[:200].astype(np.float32)
    predicted = api.post("/api/v1/deployments/ray-mlp/predict", json={"inputs": x.tolist()})
    assert predicted.status_code == 200, predicted.text
    labels = np.asarray(predicted.json()["outputs"]["output"]).argmax(axis=1)
    assert (labels == digits.target[:200]).mean() > 0.8

    # A parameter-server job: its server rank and worker rank together in one node's bundle.
    ps = api.post(
        "/api/v1/jobs",
        json=train_body(epochs=3, distributed={"strategy": "parameter_server", "workers": 1}),
    ).json()
    ps_done = wait_for(api, ps["id"], timeout=300)
    assert ps_done["status"] == "succeeded", ps_done["error"]
    ps_placed = next(e for e in _events(api, ps["id"]) if e["type"] == "placed")
    assert ps_placed["data"]["bundle"] == {"CPU": 2.0}

    # A plain job is a Ray task too; cancelling it stops it as locally.
    long = api.post("/api/v1/jobs", json=train_body(epochs=500)).json()
    wait_for(api, long["id"], statuses=("running",))
    deadline = time.monotonic() + 120
    while not any(e["type"] == "step" for e in _events(api, long["id"])):
        assert time.monotonic() < deadline, "the job never made a step"
        time.sleep(0.2)
    api.post(f"/api/v1/jobs/{long['id']}/cancel")
    assert wait_for(api, long["id"])["status"] == "cancelled"

    # A job no node can ever hold fails at once, saying so.
    gpu = api.post("/api/v1/jobs", json=train_body(resources={"gpus": 1})).json()
    refused = wait_for(api, gpu["id"])
    assert refused["status"] == "failed"
    assert "no node of the Ray cluster has 1 CPUs and 1 GPUs" in refused["error"]

    # A job in the middle of training, with a checkpoint written, for the caller to break.
    broken = api.post(
        "/api/v1/jobs", json=train_body(epochs=60, batch_size=32, checkpoint_every_steps=40)
    ).json()
    wait_event(api, broken["id"], "checkpoint", timeout=180)
    return str(broken["id"])


def _node_lost_mid_job(
    api: httpx.Client, cluster: RayCluster, *, rendezvous_host: bool = False
) -> None:
    """A node lost mid-job: back to the queue, waits for room, resumes from its checkpoint.

    The node lost is the first worker node, or with ``rendezvous_host`` the one whose agent
    hosts the job's rendezvous: the agents that survive it fail at once, seconds before Ray
    declares the node dead.
    """
    body = train_body(
        epochs=30,
        batch_size=32,
        checkpoint_every_steps=40,
        distributed={"strategy": "ddp", "workers": 1, "nodes": 2},
    )
    job = api.post("/api/v1/jobs", json=body).json()
    wait_event(api, job["id"], "checkpoint", timeout=180)
    lost = cluster.nodes[1]
    if rendezvous_host:
        placed = next(e for e in _events(api, job["id"]) if e["type"] == "placed")
        lost = cluster.node(placed["data"]["nodes"][0]["node"])
    lost.kill()
    _wait_until_waiting(api, job["id"])
    cluster.add_node(f"node{len(cluster.nodes)}")
    done = wait_for(api, job["id"], timeout=300)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempt"] == 2
    events = _events(api, job["id"])
    requeued = [e for e in events if e["type"] == "status" and e["data"].get("reason")]
    assert "was lost" in requeued[0]["data"]["reason"]
    resumed = next(e for e in events if e["type"] == "resumed")
    assert resumed["data"]["step"] > 0
    able = {n["id"] for n in _alive_nodes(api) if n["cpus"]}
    workers = [e for e in events if e["type"] == "workers"]
    assert {w["node"] for w in workers[-1]["data"]["workers"]} == able


def _wait_until_waiting(api: httpx.Client, job_id: str, timeout: float = 120) -> None:
    """Wait for the job's ``waiting`` event; fail at once, saying why, if it ended instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.get(f"/api/v1/jobs/{job_id}").json()
        if any(e["type"] == "waiting" for e in _events(api, job_id)):
            return
        assert job["status"] not in TERMINAL, f"the job ended: {job['status']}: {job['error']}"
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never emitted a waiting event")


def _one_node_down(api: httpx.Client, cluster: RayCluster) -> None:
    # With one node down, a job that needs two waits, says so, and fails naming why.
    cluster.nodes[-1].kill()
    _wait_alive(api, 1)
    body = train_body(distributed={"strategy": "ddp", "workers": 1, "nodes": 2})
    stuck = api.post("/api/v1/jobs", json=body).json()
    failed = wait_for(api, stuck["id"], timeout=180)
    assert failed["status"] == "failed"
    assert "2 nodes" in failed["error"]
    assert "1 nodes alive" in failed["error"]
    waiting = [e for e in _events(api, stuck["id"]) if e["type"] == "waiting"]
    assert waiting
    assert waiting[0]["data"]["alive_nodes"] == 1


@pytest.mark.parametrize("cluster", [{"nodes": 3, "head_cpus": 0}], indirect=True, ids=["spread"])
def test_a_job_survives_losing_the_node_that_hosts_its_rendezvous(
    ray_env: dict[str, str], cluster: RayCluster, tmp_path: Path
) -> None:
    # The head holds no worker, so the job's agents are on the two nodes that can be lost.
    # The job must be placed again once a node joins; on a loaded machine Ray takes a while
    # to release the lost attempt's bundles, so the placement may wait longer than elsewhere.
    env = {**ray_env, "MODELYARD_RAY_PLACEMENT_TIMEOUT_S": str(4 * PLACEMENT_TIMEOUT_S)}
    with _server(env, tmp_path) as (_, api):
        upload_digits(api, tmp_path)
        _node_lost_mid_job(api, cluster, rendezvous_host=True)


def test_a_server_pointed_at_no_ray_cluster_says_so_and_exits(tmp_path: Path) -> None:
    silent = free_port()  # nothing listens there
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelyard",
            "serve",
            "--port",
            str(free_port()),
            "--executor",
            "ray",
            "--ray-address",
            f"127.0.0.1:{silent}",
        ],
        env={**os.environ, "MODELYARD_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert f"cannot reach the Ray cluster at 127.0.0.1:{silent}" in done.stderr
    assert "MODELYARD_RAY_ADDRESS" in done.stderr
