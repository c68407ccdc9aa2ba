"""A distributed train job on a Ray cluster: one elastic agent per node, placed by Ray.

The job's Ray task (the coordinator, which asks for no CPUs) reserves a placement group of
one bundle per node (``STRICT_SPREAD`` over ``distributed.nodes`` nodes, so each bundle
is on a different machine) holding every rank of that node, each with the job's
per-worker ``resources``. While the cluster has no room — a node is down, or busy — the
job waits, says so in its events, and fails after ``ray_placement_timeout_s`` naming what
it waited for.

In each bundle a :class:`NodeAgent` actor fetches the data set from the blob store and
runs PyTorch's elastic agent (:func:`modelyard.jobs.train.distributed.run_node`). The
agents meet at a c10d rendezvous served by the first one; a rank that dies restarts the
whole group from the last checkpoint, across nodes, as on one machine. Rank 0, wherever it
lands, writes checkpoints and the version through the blob store and the metadata store.
Agents are owned by the coordinator, so a cancelled or killed job takes them along.

A lost node puts the job back in the queue: the next attempt removes what is left of the
earlier ones, waits for room and resumes from the last checkpoint, up to ``max_restarts``
attempts. A node is lost when Ray reports one of the job's agents gone or declares a node
that holds one of its bundles dead, whenever that happens: before the agents answer, during
the rendezvous or while the ranks train. The agents that survive a lost node often fail first
(the rendezvous store or a peer rank vanished with it), seconds before Ray declares the node
dead; so an agent's failure fails the job only once the other agents have ended, or once Ray
has had as long as its health checks take to declare a silent node dead.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from typing import Any

import ray
from ray.exceptions import NodeDiedError, RayActorError, RayTaskError
from ray.util.placement_group import (
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from torch.distributed.elastic.utils.distributed import get_free_port

from modelyard.config import Settings
from modelyard.errors import Unavailable
from modelyard.jobs.context import JobCancelled, JobContext, JobRequeued, open_context
from modelyard.jobs.ray_executor import (
    cluster_nodes,
    first_line,
    fits_somewhere,
    worker_resources,
)
from modelyard.jobs.train.distributed import Rendezvous, announce, job_result, run_node
from modelyard.jobs.train.plan import TrainPlan
from modelyard.training.distributed import DistributedConfig

# How often the coordinator looks at its agents and keeps the job's heartbeat.
POLL_S = 1.0
# Ray's own defaults for the health checks of its nodes: 5 checks in a row missed, 3 s apart,
# each waiting up to 10 s (used if this Ray does not say what its cluster was given).
RAY_HEALTH_CHECKS = (5, 3.0, 10.0)


class NodeAgent:
    """One node's share of a distributed job (a Ray actor in a placement-group bundle)."""

    def __init__(self, settings_json: str, job_id: str, attempt: int) -> None:
        self.settings = Settings.model_validate_json(settings_json)
        self.job_id = job_id
        self.attempt = attempt

    def where(self) -> dict[str, str]:
        """This node: its Ray node id, its IP and a rendezvous endpoint free on it."""

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

        ctx = open_context(self.settings, self.job_id, self.attempt)
        try:
            return run_node(
                ctx,
                ctx.plan(TrainPlan),
                threads=threads,
                rendezvous=rendezvous,
                node=ray.get_runtime_context().get_node_id(),
            )
        finally:
            ctx.close()


def run_distributed_on_ray(ctx: JobContext, plan: TrainPlan) -> dict[str, Any]:
    """Train as the plan's ``distributed`` section says, over nodes of the Ray cluster."""
    return job_result(run_on_ray(ctx, announce(ctx, plan)))


def run_on_ray(ctx: JobContext, config: DistributedConfig) -> dict[int, Any]:
    """Run the job's ranks on ``config.nodes`` nodes of the cluster; every rank's result."""

    cpus, gpus = worker_resources(ctx.settings, ctx.spec)
    ranks = config.workers + (1 if config.strategy == "parameter_server" else 0)
    bundle: dict[str, float] = {"CPU": cpus * ranks}
    if gpus:
        bundle["GPU"] = gpus * ranks
    _remove_earlier_groups(ctx)
    group = placement_group(
        [dict(bundle) for _ in range(config.nodes)],
        strategy="STRICT_SPREAD" if config.nodes > 1 else "PACK",
        name=_group_name(ctx.job_id, ctx.attempt),
    )
    agents: list[Any] = []
    try:
        _wait_for_room(ctx, group, config.nodes, bundle)
        hosts = _bundle_nodes(group, config.nodes)
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
        places: list[dict[str, str]] = _await_agents(
            ctx, config, [agent.where.remote() for agent in agents], hosts, cancel=True
        )
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
        # The ranks see a cancel themselves; the coordinator only keeps the heartbeat.
        parts: list[dict[int, Any]] = _await_agents(ctx, config, refs, hosts, cancel=False)
        results: dict[int, Any] = {}
        for part in parts:
            results.update(part)
        return results
    finally:
        for agent in agents:
            ray.kill(agent)
        remove_placement_group(group)


def _group_name(job_id: str, attempt: int) -> str:
    return f"modelyard-job-{job_id}-{attempt}"


def _remove_earlier_groups(ctx: JobContext) -> None:
    """Remove what is left of the placement groups of the job's earlier attempts.

    A coordinator lost with its node cannot remove its group, and Ray keeps a group as long
    as the driver (the server) lives: left alone, it would hold its bundles, and take room on
    the nodes that join later, for good.
    """

    for attempt in range(1, ctx.attempt):
        try:
            earlier = get_placement_group(_group_name(ctx.job_id, attempt))
        except ValueError:
            continue  # removed by its own coordinator
        remove_placement_group(earlier)


def _bundle_nodes(group: Any, count: int) -> list[str]:
    """The id of the node that holds each bundle of a reserved placement group."""

    where: dict[int, str] = placement_group_table(group)["bundles_to_node_id"]
    return [where[index] for index in range(count)]


def _wait_for_room(ctx: JobContext, group: Any, nodes: int, bundle: dict[str, float]) -> None:
    """Wait until the placement group is reserved; fail after the configured timeout."""

    deadline = time.monotonic() + ctx.settings.ray_placement_timeout_s
    reserved = group.ready()
    said = False
    while True:
        ready, _ = ray.wait([reserved], timeout=POLL_S)
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


def _await_agents(
    ctx: JobContext,
    config: DistributedConfig,
    refs: Sequence[Any],
    hosts: Sequence[str],
    *,
    cancel: bool,
) -> list[Any]:
    """What each agent's call (``refs[i]``, agent ``i`` on node ``hosts[i]``) returned.

    Keeps the job's heartbeat while it waits; with ``cancel``, a cancelled job stops waiting.
    A lost node (an agent gone, or a node of the job declared dead) puts the job back in the
    queue, to resume from its last checkpoint once the cluster has room again, up to
    ``max_restarts`` times. An agent that failed otherwise fails the job, naming its node,
    once every other agent has ended or Ray has had time to declare a lost node dead.
    """

    pending = list(refs)
    # The first agent that failed, and until when Ray may still declare a lost node dead.
    failed: tuple[str, BaseException, float] | None = None
    while pending:
        done, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_S)
        lost: str | None = None
        for ref in done:
            host = hosts[refs.index(ref)]
            try:
                ray.get(ref)
            except Exception as exc:
                gone = isinstance(exc, NodeDiedError) or (
                    isinstance(exc, RayActorError) and not exc.actor_init_failed
                )
                if gone:
                    lost = host
                elif failed is None:
                    failed = (host, exc, time.monotonic() + node_loss_detection_s())
        if pending and lost is None:
            alive = {n["id"] for n in cluster_nodes() if n["alive"]}
            lost = next((host for host in hosts if host not in alive), None)
        if lost is not None:
            _requeue_or_fail(ctx, config, lost)
        if failed is not None and (not pending or time.monotonic() > failed[2]):
            host, error, _ = failed
            cause = error.cause if isinstance(error, RayTaskError) else error
            raise Unavailable(
                f"the job's agent on {_where(host)} failed: "
                f"{type(cause).__name__}: {first_line(cause)}"
            )
        if ctx.should_stop() and cancel:
            raise JobCancelled
    return list(ray.get(list(refs)))


def _requeue_or_fail(ctx: JobContext, config: DistributedConfig, host: str) -> None:
    """The job's node ``host`` was lost: back to the queue, or failed when out of attempts."""
    if ctx.attempt <= config.max_restarts:
        raise JobRequeued(
            f"the job's agent on {_where(host)} was lost; the job goes back to the queue "
            "and resumes from its last checkpoint when the cluster has room"
        )
    raise Unavailable(
        f"the job's agent on {_where(host)} was lost, and the job has used its "
        f"{config.max_restarts} restarts"
    )


def node_loss_detection_s() -> float:
    """How long Ray may take to declare a silent node dead, plus one look at the agents.

    Its control service checks each node every ``health_check_period_ms``, waits up to
    ``health_check_timeout_ms`` for an answer, and declares the node dead after
    ``health_check_failure_threshold`` checks in a row failed; this process knows the
    values the cluster runs with.
    """
    try:
        from ray._raylet import Config  # type: ignore[attr-defined]
    except ImportError:
        checks, period_s, timeout_s = RAY_HEALTH_CHECKS
    else:
        checks = Config.health_check_failure_threshold()
        period_s = Config.health_check_period_ms() / 1000
        timeout_s = Config.health_check_timeout_ms() / 1000
    return float(checks * (period_s + timeout_s) + POLL_S)


def _where(node: str) -> str:
    address = next((n["address"] for n in cluster_nodes() if n["id"] == node), None)
    return f"node {node[:12]} ({address})" if address else f"node {node[:12]}"


def _describe(bundle: dict[str, float]) -> str:
    text = f"{bundle['CPU']:g} CPUs"
    if bundle.get("GPU"):
        text += f" and {bundle['GPU']:g} GPUs"
    return text
