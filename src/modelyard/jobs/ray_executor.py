"""The Ray executor: every job a task on a Ray cluster (``MODELYARD_EXECUTOR=ray``).

The server connects to the cluster as a driver (``ray_address``; without one it starts a
private Ray instance on this machine). A claimed job becomes a Ray task that asks for the
job's ``resources`` (default ``ray_job_cpus`` / ``ray_job_gpus``; a job whose config names a
CUDA device gets a GPU) and runs the same :func:`modelyard.jobs.worker.run` as a local
child process would: it reads its job from the metadata store, keeps the heartbeat, writes
events, checkpoints and the resulting version through the store and the blob store, so
every node needs PostgreSQL and S3 (or a shared file system), never a node-local path.

A distributed job's task only coordinates: it reserves one placement-group bundle per node
and starts one elastic agent per node (:mod:`modelyard.jobs.ray_distributed`).

Cancel works as locally: the task sees the request and stops; after the grace period it is
cancelled with ``ray.cancel(force=True)``. Tasks die with their driver, so a server killed
mid-job leaves the job ``running`` with a dead runner; the next server re-queues it and it
resumes from its last checkpoint.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from modelyard.config import Settings
from modelyard.db.engine import Database
from modelyard.db.tables import Job
from modelyard.errors import Unavailable
from modelyard.jobs.events import EventLog
from modelyard.jobs.executor import Executor, Exit
from modelyard.jobs.placement import Placement
from modelyard.jobs.resources import stored_resources, wants_gpu

if TYPE_CHECKING:
    from ray import ObjectRef

log = logging.getLogger("modelyard.executor.ray")


def run_job(
    settings_json: str, job_id: str, attempt: int, threads: int, placement: Placement
) -> None:
    """The body of a job's Ray task (module level, so Ray ships it by reference)."""
    # The worker module loads PyTorch; only the Ray task that runs the job needs it.
    from modelyard.jobs import worker

    settings = Settings.model_validate_json(settings_json)
    worker.run(settings, job_id, attempt, threads, placement)


def task_resources(settings: Settings, spec: dict[str, Any]) -> tuple[float, float]:
    """CPUs and GPUs the job's task asks for: a distributed job's coordinator asks none."""
    if spec.get("distributed"):
        return 0.0, 0.0
    return worker_resources(settings, spec)


def worker_resources(settings: Settings, spec: dict[str, Any]) -> tuple[float, float]:
    """CPUs and GPUs of one worker of the job (every rank of a distributed one)."""
    resources = stored_resources(spec)
    cpus = resources.cpus or settings.ray_job_cpus
    gpus = resources.gpus
    if gpus is None:
        gpus = max(settings.ray_job_gpus, 1.0 if wants_gpu(spec) else 0.0)
    return cpus, gpus


def connect(settings: Settings) -> None:
    """Join the Ray cluster of ``settings`` as a driver (idempotent)."""
    # Ray loads only in a server that runs the Ray executor.
    import ray

    if ray.is_initialized():
        return
    options: dict[str, Any] = {
        "namespace": settings.ray_namespace,
        "log_to_driver": False,
        "configure_logging": False,
    }
    if settings.ray_address:
        ray.init(address=settings.ray_address, **options)
    else:
        ray.init(include_dashboard=False, **options)


def probe(address: str | None, timeout: float = 5.0) -> None:
    """Unavailable, naming the address, if nothing listens at a ``host:port`` address.

    Ray itself retries an unreachable head for minutes before it gives up.
    """
    if not address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in host:
        return  # "auto" or a scheme Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise Unavailable(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start its "
            f"head with 'ray start --head --port={port}' or fix MODELYARD_RAY_ADDRESS"
        ) from None


def cluster_nodes() -> list[dict[str, Any]]:
    """The cluster's nodes: id, address, whether alive, and their total resources."""
    # Ray loads only in a server that runs the Ray executor.
    import ray

    nodes = []
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        resources = node.get("Resources") or {}
        nodes.append(
            {
                "id": node["NodeID"],
                "address": node.get("NodeManagerAddress"),
                "alive": bool(node.get("Alive")),
                "cpus": float(resources.get("CPU", 0)),
                "gpus": float(resources.get("GPU", 0)),
            }
        )
    return nodes


def fits_somewhere(cpus: float, gpus: float, nodes: list[dict[str, Any]], count: int = 1) -> bool:
    """Whether ``count`` alive nodes each have at least ``cpus`` CPUs and ``gpus`` GPUs."""
    able = [n for n in nodes if n["alive"] and n["cpus"] >= cpus and n["gpus"] >= gpus]
    return len(able) >= count


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (Ray's carry whole tracebacks)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


class RayExecutor(Executor["ObjectRef[None]"]):
    """Runs queued jobs as tasks on a Ray cluster."""

    kind = "ray"
    distributed: Placement = "ray"

    def __init__(self, settings: Settings, db: Database, events: EventLog) -> None:
        super().__init__(settings, db, events, settings.executor_slots)
        self._task: Any = None

    def preflight(self) -> None:
        probe(self._settings.ray_address)

    def _prepare(self) -> None:
        # Ray loads only in a server that runs the Ray executor.
        import ray

        connect(self._settings)
        self._task = ray.remote(max_retries=0)(run_job)
        nodes = cluster_nodes()
        alive = [n for n in nodes if n["alive"]]
        log.info("connected to a Ray cluster of %d nodes", len(alive))
        if len(alive) > 1 and self._settings.blob_store == "local":
            log.warning(
                "the blob store is a local directory but the Ray cluster has %d nodes; "
                "use MODELYARD_BLOB_STORE=s3 so that every node can read and write artifacts",
                len(alive),
            )

    def _spawn(self, job_id: str, attempt: int) -> tuple[ObjectRef[None], str]:
        with self._db.session() as session:
            spec = dict(session.get_one(Job, job_id).spec)
        cpus, gpus = task_resources(self._settings, spec)
        if cpus or gpus:
            nodes = cluster_nodes()
            if not fits_somewhere(cpus, gpus, nodes):
                largest = max(nodes, key=lambda n: (n["gpus"], n["cpus"]), default=None)
                raise Unavailable(
                    f"no node of the Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs for this "
                    f"job (largest node: {largest['cpus']:g} CPUs, {largest['gpus']:g} GPUs)"
                    if largest
                    else "the Ray cluster has no nodes"
                )
        threads = max(1, int(cpus)) if cpus else 1
        ref = self._task.options(num_cpus=cpus, num_gpus=gpus, name=f"job-{job_id}").remote(
            self._settings.export_json(), job_id, attempt, threads, self.placement(spec)
        )
        return ref, self.runner

    def _exit(self, handle: ObjectRef[None]) -> Exit | None:
        # Ray loads only in a server that runs the Ray executor.
        import ray

        ready, _ = ray.wait([handle], timeout=0)
        if not ready:
            return None
        # Ray loads only in a server that runs the Ray executor.
        from ray.exceptions import (
            LocalRayletDiedError,
            NodeDiedError,
            OwnerDiedError,
            WorkerCrashedError,
        )

        try:
            ray.get(handle)
        except (NodeDiedError, LocalRayletDiedError, WorkerCrashedError, OwnerDiedError) as exc:
            return Exit(
                ok=False,
                why=f"the job's Ray task was lost ({type(exc).__name__}: {first_line(exc)})",
                lost=True,
            )
        except Exception as exc:
            return Exit(
                ok=False, why=f"the job's Ray task failed ({type(exc).__name__}) {first_line(exc)}"
            )
        return Exit(ok=True)

    def _kill(self, handle: ObjectRef[None]) -> None:
        # Ray loads only in a server that runs the Ray executor.
        import ray

        ray.cancel(handle, force=True)

    def _shutdown(self) -> None:
        # Ray loads only in a server that runs the Ray executor.
        import ray

        if ray.is_initialized():
            ray.shutdown()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["nodes"] = cluster_nodes()
        info["address"] = self._settings.ray_address or "local"
        info["driver_pid"] = os.getpid()
        return info
