"""Running a train job whose plan has ``distributed``: ranks under PyTorch's elastic agent.

The executor places such a job (:mod:`modelyard.jobs.placement`): on this machine through
:func:`run_distributed_train`, over a Ray cluster's nodes through
:func:`modelyard.jobs.ray_distributed.run_distributed_on_ray`.

On each node (the job's own worker process locally; one Ray actor per node on a Ray
cluster, see :mod:`modelyard.jobs.ray_distributed`) the data set's canonical files are
fetched from the blob store and the process becomes the node's elastic agent; each rank
memory-maps the files and trains its share. Rank 0 is the only
rank that talks to the job: it emits events (``workers`` with every rank's pid and host,
``restarted`` after an elastic restart), writes checkpoints to the blob store and, at the
end, registers the model version. Every rank of a restarted group resumes from the job's
last checkpoint. The agent's process keeps the job's heartbeat while the ranks run.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from modelyard.config import Settings
from modelyard.errors import InvalidInput
from modelyard.jobs.context import JobCancelled, JobContext, open_context, worker_threads
from modelyard.jobs.reporter import JobReporter
from modelyard.jobs.train.plan import TrainPlan
from modelyard.jobs.train.runner import register_result, start_state
from modelyard.storage.staging import scratch_dir
from modelyard.training.data import load_xy
from modelyard.training.ddp import train_ddp
from modelyard.training.distributed import (
    DistributedConfig,
    init_group,
    launch,
    rank_device,
    restart_count,
)
from modelyard.training.param_server import run_rank


@dataclass(frozen=True)
class RankJob:
    """What every rank needs to find its data and its job (picklable, for spawn)."""

    settings: Settings
    job_id: str
    attempt: int
    owner_id: str
    plan: TrainPlan
    kind: str
    files: dict[str, str]
    val_files: dict[str, str] | None
    dataset_id: str
    work: str
    threads: int
    node: str | None = None


@dataclass(frozen=True)
class Rendezvous:
    """Where the agents of a multi-node run meet; one agent hosts the store."""

    endpoint: str
    run_id: str
    nodes: int
    host: bool
    local_addr: str | None = None


def run_distributed_train(ctx: JobContext, plan: TrainPlan) -> dict[str, Any]:
    """Train as the plan's ``distributed`` section says, on this machine; the job's result.

    (On the Ray executor, :func:`modelyard.jobs.ray_distributed.run_distributed_on_ray`
    places the nodes instead.)
    """
    config = announce(ctx, plan)
    if config.nodes > 1:
        raise InvalidInput(
            "distributed.nodes: more than one node needs the Ray executor (MODELYARD_EXECUTOR=ray)"
        )
    threads = max(1, worker_threads(ctx.settings) // config.workers)
    done = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(ctx, done), daemon=True)
    beat.start()
    try:
        results = run_node(ctx, plan, threads=threads)
    finally:
        done.set()
        beat.join()
    return job_result(results)


def announce(ctx: JobContext, plan: TrainPlan) -> DistributedConfig:
    """The job's distributed config, logged as the job starts."""
    config = distributed_config(plan)
    ctx.log(
        f"{config.strategy}: {config.world_size} workers"
        + (f" on {config.nodes} nodes" if config.nodes > 1 else "")
        + f", up to {config.max_restarts} restarts"
    )
    return config


def distributed_config(plan: TrainPlan) -> DistributedConfig:
    """The plan's ``distributed`` section (a plan without one is not run here)."""
    if plan.distributed is None:
        raise InvalidInput("distributed: this job's plan does not run distributed")
    return plan.distributed


def job_result(results: dict[int, Any]) -> dict[str, Any]:
    """The job's result: what rank 0 returned; a run rank 0 did not finish was cancelled."""
    result = results.get(0)
    if not isinstance(result, dict) or result.get("cancelled"):
        raise JobCancelled
    return result


def run_node(
    ctx: JobContext,
    plan: TrainPlan,
    *,
    threads: int,
    rendezvous: Rendezvous | None = None,
    node: str | None = None,
) -> dict[int, Any]:
    """This machine's share of the job: its data fetched, its ranks under an elastic agent.

    Returns what each of this node's ranks returned, keyed by global rank.
    """
    config = distributed_config(plan)
    settings = ctx.settings
    datasets = ctx.datasets
    with scratch_dir(settings.tmp_dir, f"job-{ctx.job_id}-") as work:
        train_row = ctx.dataset(dataset_id=plan.dataset_id, name=plan.dataset)
        files = datasets.canonical_files(train_row, work / "train")
        val_files = None
        if plan.validation_dataset:
            val_row = ctx.dataset(dataset_id=None, name=plan.validation_dataset)
            val_files = {
                k: str(v) for k, v in datasets.canonical_files(val_row, work / "val").items()
            }
        job = RankJob(
            settings=settings,
            job_id=ctx.job_id,
            attempt=ctx.attempt,
            owner_id=ctx.owner_id,
            plan=plan,
            kind=train_row.kind,
            files={k: str(v) for k, v in files.items()},
            val_files=val_files,
            dataset_id=train_row.id,
            work=str(work),
            threads=threads,
            node=node,
        )
        meet: dict[str, Any] = {}
        if rendezvous is not None:
            meet = {
                "endpoint": rendezvous.endpoint,
                "run_id": rendezvous.run_id,
                "nodes": rendezvous.nodes,
                "host": rendezvous.host,
                "local_addr": rendezvous.local_addr,
            }
        if config.strategy == "ddp":
            return launch(config, ddp_rank, job, **meet)
        group = config.model_copy(update={"workers": config.workers + 1, "max_restarts": 0})
        return launch(group, parameter_server_rank, job, **meet)


def _heartbeat(ctx: JobContext, done: threading.Event) -> None:
    while not done.wait(1.0):
        ctx.should_stop()


def _load(job: RankJob) -> tuple[Any, Any, Any, Any]:
    plan = job.plan
    x, y = load_xy(
        {k: Path(v) for k, v in job.files.items()},
        job.kind,  # type: ignore[arg-type]
        plan.label,
        plan.features,
    )
    x_val = y_val = None
    if job.val_files is not None:
        x_val, y_val = load_xy(
            {k: Path(v) for k, v in job.val_files.items()},
            job.kind,  # type: ignore[arg-type]
            plan.label,
            plan.features,
        )
    return x, y, x_val, y_val


def rank_context(job: RankJob) -> JobContext:
    """A :class:`JobContext` of the job inside a rank (its own database connections)."""
    return open_context(job.settings, job.job_id, job.attempt)


def ddp_rank(job: RankJob) -> dict[str, Any] | None:
    """One DDP rank of the job; rank 0 returns the job's result, the others None."""
    torch.set_num_threads(job.threads)
    plan = job.plan
    init_group(rank_device(plan.config.device))
    rank = dist.get_rank()
    ctx = rank_context(job)
    scratch = Path(job.work) / f"rank-{rank}-restart-{restart_count()}"
    scratch.mkdir(parents=True, exist_ok=True)
    reporter = JobReporter(ctx, scratch) if rank == 0 else None
    try:
        x, y, x_val, y_val = _load(job)
        config, init_weights, resume = start_state(ctx, plan, scratch)
        pids: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(
            pids, {"pid": os.getpid(), "host": socket.gethostname(), "node": job.node}
        )
        if rank == 0:
            _announce(ctx, pids, resume)
        result = train_ddp(
            plan.arch_spec,
            config,
            x,
            y,
            x_val=x_val,
            y_val=y_val,
            init_weights=init_weights,
            callbacks=reporter,
            resume=resume,
        )
        if reporter is not None:
            reporter.close()
        dist.destroy_process_group()
        if rank != 0:
            return None
        if result.cancelled:
            return {"cancelled": True}
        train_row = ctx.dataset(dataset_id=job.dataset_id, name=plan.dataset)
        return register_result(ctx, plan, result, train_row, scratch)
    finally:
        if reporter is not None:
            reporter.close(raise_failure=False)
        ctx.close()


def _announce(ctx: JobContext, workers: list[Any], resume: dict[str, Any] | None) -> None:
    restarts = restart_count()
    ctx.emit("workers", {"restart": restarts, "workers": workers})
    step = int(resume["global_step"]) if resume is not None else 0
    if restarts:
        ctx.emit("restarted", {"restart": restarts, "from_step": step})
        ctx.log(f"a worker died; the group restarted ({restarts}) from step {step}")
    if resume is not None:
        ctx.emit("resumed", {"step": step, "attempt": ctx.attempt, "restart": restarts})


def parameter_server_rank(job: RankJob) -> dict[str, Any] | None:
    """Rank 0 serves the parameters and registers the version; the others are workers."""
    torch.set_num_threads(job.threads)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    config = distributed_config(job.plan)
    ctx = rank_context(job)
    scratch = Path(job.work) / f"rank-{rank}"
    scratch.mkdir(parents=True, exist_ok=True)
    reporter = JobReporter(ctx, scratch) if rank == 0 else None
    try:
        x, y, x_val, y_val = _load(job)
        if rank == 0:
            ctx.emit(
                "workers",
                {"restart": 0, "server_pid": os.getpid(), "workers": world - 1, "node": job.node},
            )
        result = run_rank(
            rank,
            world,
            job.plan.arch_spec,
            job.plan.config,
            x,
            y,
            x_val=x_val,
            y_val=y_val,
            staleness=config.staleness,
            callbacks=reporter,
        )
        if reporter is not None:
            reporter.close()
        if dist.is_initialized():
            dist.destroy_process_group()
        if result is None:
            return None
        if result.cancelled:
            return {"cancelled": True}
        train_row = ctx.dataset(dataset_id=job.dataset_id, name=job.plan.dataset)
        return register_result(ctx, job.plan, result, train_row, scratch)
    finally:
        if reporter is not None:
            reporter.close(raise_failure=False)
        ctx.close()
