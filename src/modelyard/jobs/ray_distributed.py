"""A distributed train job on a Ray cluster: one elastic agent per node, placed by Ray.

The job's Ray task (the coordinator, which asks for no CPUs) reserves a placement group of
one bundle per node (``STRICT_SPREAD`` over ``distributed.nodes`` nodes, so each bundle
is on a different machine) holding every rank of that node, each with the job's
per-worker ``resources``. While the cluster has no room — a node is down, or busy — the
job waits, says so in its events, and fails after ``ray_placement_timeout_s`` naming what
it waited for.

In each bundle a :class:`NodeAgent` actor fetches the data set from the blob store and
runs PyTorch's elastic agent (:func:`modelyard.jobs.distributed_runner.run_node`). The
agents meet at a c10d rendezvous served by the first one; a rank that dies restarts the
whole group from the last checkpoint, across nodes, as on one machine. A lost node (its
agent gone) puts the job back in the queue: the next attempt waits for room and resumes
from the last checkpoint, up to ``max_restarts`` attempts. Rank 0, wherever it lands,
writes checkpoints and the version through the blob store and the metadata store. Agents
are owned by the coordinator, so a cancelled or killed job takes them along.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from modelyard.config import Settings
from modelyard.errors import Unavailable
from modelyard.jobs.distributed_runner import Rendezvous, run_node
from modelyard.jobs.ray_executor import (
    cluster_nodes,
    first_line,
    fits_somewhere,
    worker_resources,
)
from modelyard.jobs.worker import JobCancelled, JobContext, JobRequeued, open_context
from modelyard.training.distributed import DistributedConfig

# How often the coordinator looks at its agents and keeps the job's heartbeat.
POLL_S = 1.0


class NodeAgent:
    """One node's share of a distributed job (a Ray actor in a placement-group bundle)."""

    def __init__(self, settings_json: str, job_id: str, attempt: int) -> None:
        self.settings = Settings.model_validate_json(settings_json)
        self.job_id = job_id
        self.attempt = attempt

    def where(self) -> dict[str, str]:
        """This node: its Ray node id, its IP and a rendezvous endpoint free on it."""
        import ray
        from torch.distributed.elastic.utils.distributed import get_free_port

        ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        port: int = get_free_port()  # type: ignore[no-untyped-call]
        return {
            "node": ray.get_runtime_context().get_node_id(),
            "ip": ip,
            "host": socket.gethostname(),
            "endpoint": f"{ip}:{port}",
        }

    def run(self, rendezvous: Rendezvous, threads: int) -> dict[int, Any]:
        """Fetch the data and run this node's ranks; what each returned, by global rank."""
        import ray

        ctx = open_context(self.settings, self.job_id, self.attempt)
        try:
            return run_node(
                ctx,
                threads=threads,
                rendezvous=rendezvous,
                node=ray.get_runtime_context().get_node_id(),
            )
        finally:
            ctx.db.dispose()


def run_on_ray(ctx: JobContext, config: DistributedConfig) -> dict[int, Any]:
    """Run the job's ranks on ``config.nodes`` nodes of the cluster; every rank's result."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    cpus, gpus = worker_resources(ctx.settings, ctx.spec)
    ranks = config.workers + (1 if config.strategy == "parameter_server" else 0)
    bundle: dict[str, float] = {"CPU": cpus * ranks}
    if gpus:
        bundle["GPU"] = gpus * ranks
    group = placement_group(
        [dict(bundle) for _ in range(config.nodes)],
        strategy="STRICT_SPREAD" if config.nodes > 1 else "PACK",
        name=f"modelyard-job-{ctx.job_id}-{ctx.attempt}",
    )
    agents: list[Any] = []
    try:
        _wait_for_room(ctx, group, config.nodes, bundle)
        actor = ray.remote(NodeAgent)
        for index in range(config.nodes):
            placement = PlacementGroupSchedulingStrategy(
                placement_group=group, placement_group_bundle_index=index
            )
            agents.append(
                actor.options(
                    scheduling_strategy=placement,
                    num_cpus=bundle["CPU"],
                    num_gpus=bundle.get("GPU", 0),
                    max_restarts=0,
                    name=f"modelyard-job-{ctx.job_id}-{ctx.attempt}-node-{index}",
                ).remote(ctx.settings.export_json(), ctx.job_id, ctx.attempt)
            )
        places = ray.get([agent.where.remote() for agent in agents])
        ctx.emit("placed", {"nodes": places, "ranks_per_node": ranks, "bundle": bundle})
        run_id = f"{ctx.job_id}-{ctx.attempt}"
        threads = max(1, int(cpus))
        refs = [
            agent.run.remote(
                Rendezvous(
                    endpoint=places[0]["endpoint"],
                    run_id=run_id,
                    nodes=config.nodes,
                    host=index == 0,
                    local_addr=places[index]["ip"],
                ),
                threads,
            )
            for index, agent in enumerate(agents)
        ]
        return _gather(ctx, config, refs, places)
    finally:
        for agent in agents:
            ray.kill(agent)
        remove_placement_group(group)


def _wait_for_room(ctx: JobContext, group: Any, nodes: int, bundle: dict[str, float]) -> None:
    """Wait until the placement group is reserved; fail after the configured timeout."""
    import ray

    deadline = time.monotonic() + ctx.settings.ray_placement_timeout_s
    said = False
    while True:
        ready, _ = ray.wait([group.ready()], timeout=POLL_S)
        if ready:
            return
        if ctx.should_stop():
            raise JobCancelled
        alive = [n for n in cluster_nodes() if n["alive"]]
        if not said:
            ctx.emit(
                "waiting",
                {
                    "for": f"{nodes} nodes with {_describe(bundle)} free each",
                    "alive_nodes": len(alive),
                    "fits_now": fits_somewhere(
                        bundle["CPU"], bundle.get("GPU", 0.0), alive, count=nodes
                    ),
                },
            )
            ctx.log(
                f"waiting for the cluster: {nodes} nodes with {_describe(bundle)} free each; "
                f"{len(alive)} nodes alive"
            )
            said = True
        if time.monotonic() > deadline:
            raise Unavailable(
                f"the Ray cluster did not have {nodes} nodes with {_describe(bundle)} free "
                f"each within {ctx.settings.ray_placement_timeout_s:g} s "
                f"({len(alive)} nodes alive); start more nodes or ask for fewer"
            )


def _gather(
    ctx: JobContext,
    config: DistributedConfig,
    refs: list[Any],
    places: list[dict[str, str]],
) -> dict[int, Any]:
    """Wait for every agent, keeping the heartbeat.

    An agent that vanished (its node or its process was lost) puts the job back in the
    queue, to resume from its last checkpoint once the cluster has room again, up to
    ``max_restarts`` times; an agent that failed otherwise fails the job, naming its node.
    """
    import ray
    from ray.exceptions import NodeDiedError, RayActorError

    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_S)
        for ref in done:
            try:
                ray.get(ref)
            except Exception as exc:
                node = places[refs.index(ref)]
                where = f"node {node['node'][:12]} ({node['ip']})"
                lost = isinstance(exc, (RayActorError, NodeDiedError))
                if lost and ctx.attempt <= config.max_restarts:
                    raise JobRequeued(
                        f"the job's agent on {where} was lost; the job goes back to the queue "
                        "and resumes from its last checkpoint when the cluster has room"
                    ) from None
                raise Unavailable(
                    f"the job's agent on {where} failed: {type(exc).__name__}: {first_line(exc)}"
                ) from None
        ctx.should_stop()  # the heartbeat; the ranks see a cancel themselves
    results: dict[int, Any] = {}
    for part in ray.get(refs):
        results.update(part)
    return results


def _describe(bundle: dict[str, float]) -> str:
    text = f"{bundle['CPU']:g} CPUs"
    if bundle.get("GPU"):
        text += f" and {bundle['GPU']:g} GPUs"
    return text
