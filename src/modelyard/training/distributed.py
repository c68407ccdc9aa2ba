"""What a distributed run is (:class:`DistributedConfig`) and how its processes start.

Ranks are started by PyTorch's elastic launcher (the machinery behind ``torchrun``): one
agent per node, a c10d rendezvous, and whole-group restarts when a rank dies, bounded by
``max_restarts``. :func:`launch` runs an entrypoint in ``workers`` local ranks and returns
what each rank returned.

>>> cfg = parse_distributed({"strategy": "ddp", "workers": 2})
>>> launch(cfg, my_entrypoint, arg1, arg2)  # {0: <rank 0's return>, 1: ...}  # doctest: +SKIP
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

import torch

from modelyard.training.distributed_config import DistributedConfig as DistributedConfig
from modelyard.training.distributed_config import parse_distributed as parse_distributed


def backend_for(device: torch.device) -> str:
    """The collective backend for ``device``: nccl on CUDA, gloo on the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(requested: str) -> torch.device:
    """This rank's device: the configured one, pinned to ``LOCAL_RANK``'s GPU on CUDA."""
    from modelyard.training.device import resolve_device

    device = resolve_device(requested)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def init_group(device: torch.device) -> None:
    """Join the process group the launcher described in the environment.

    The group's keys live under a prefix per restart: after an elastic restart the agent's
    store still holds the keys of the group that died, and reusing them hangs the new one.
    """
    import datetime

    import torch.distributed as dist
    from torch.distributed import PrefixStore, TCPStore  # type: ignore[attr-defined]

    if dist.is_initialized():
        return
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world,
        is_master=not agent_store and rank == 0,
        timeout=datetime.timedelta(seconds=300),
    )
    prefixed = PrefixStore(f"modelyard/restart-{restart_count()}/", store)
    dist.init_process_group(backend_for(device), store=prefixed, rank=rank, world_size=world)


def restart_count() -> int:
    """How often the elastic agent has restarted this group (0 on the first start)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def free_endpoint(host: str = "127.0.0.1") -> str:
    """``host:port`` with a port free right now, for a rendezvous."""
    from torch.distributed.elastic.utils.distributed import get_free_port

    port: int = get_free_port()  # type: ignore[no-untyped-call]
    return f"{host}:{port}"


def launch(
    config: DistributedConfig,
    entrypoint: Callable[..., Any],
    *args: Any,
    endpoint: str | None = None,
    run_id: str | None = None,
    nodes: int = 1,
    host: bool | None = None,
    local_addr: str | None = None,
) -> dict[int, Any]:
    """Run ``entrypoint(*args)`` in ``config.workers`` ranks under an elastic agent.

    ``nodes`` agents (one per machine, each calling this with the same ``endpoint`` and
    ``run_id``) form one group; the one given ``host=True`` serves the rendezvous store at
    ``endpoint``, and ``local_addr`` is the address the others reach this agent's ranks
    at. Returns each local rank's return value, keyed by global rank. A rank that dies
    restarts the whole group, up to ``config.max_restarts`` times; after that
    :class:`torch.distributed.elastic.multiprocessing.errors.ChildFailedError`.
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    rdzv_configs: dict[str, Any] = {"timeout": 300}
    if host is not None:
        rdzv_configs["is_host"] = host
    launch_config = LaunchConfig(
        min_nodes=nodes,
        max_nodes=nodes,
        nproc_per_node=config.workers,
        run_id=run_id or uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint=endpoint or free_endpoint(),
        rdzv_configs=rdzv_configs,
        max_restarts=config.max_restarts,
        monitor_interval=0.2,
        start_method="spawn",
        local_addr=local_addr,
    )
    result: dict[int, Any] = elastic_launch(launch_config, entrypoint)(*args)
    return result
