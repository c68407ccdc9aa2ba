"""Entrypoints that run inside the ranks the tests launch (importable by spawned processes)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modelyard.training import BaseCallbacks, checkpoint_from_bytes, checkpoint_to_bytes


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data.astype(np.float32), data.target.astype(np.int64)


class FileCallbacks(BaseCallbacks):
    """Keep the latest checkpoint in a file and the events in memory; optionally SIGKILL
    another rank right after the ``kill_after``-th checkpoint."""

    def __init__(self, path: Path, kill_pid: int | None = None, kill_after: int = 0) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []
        self.kill_pid = kill_pid
        self.kill_after = kill_after
        self.saved = 0

    def on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(checkpoint_to_bytes(state))
        os.replace(tmp, self.path)
        self.saved += 1
        if self.kill_pid is not None and self.saved == self.kill_after:
            os.kill(self.kill_pid, signal.SIGKILL)


def ddp_rank(
    spec: dict[str, Any],
    config: dict[str, Any],
    rows: int,
    checkpoint: str,
    kill_after: int | None,
) -> dict[str, Any]:
    """Train on the first ``rows`` digits; on the first try, rank 0 optionally
    SIGKILLs rank 1 after its ``kill_after``-th checkpoint."""
    import torch.distributed as dist

    from modelyard.training.ddp import train_ddp
    from modelyard.training.distributed import init_group, restart_count

    torch.set_num_threads(1)
    init_group(torch.device("cpu"))
    x, y = digits()
    path = Path(checkpoint)
    resume = checkpoint_from_bytes(path.read_bytes()) if path.exists() else None
    pids: list[int | None] = [None] * dist.get_world_size()
    dist.all_gather_object(pids, os.getpid())
    victim = pids[1] if kill_after is not None and restart_count() == 0 else None
    callbacks = FileCallbacks(path, victim, kill_after or 0)
    result = train_ddp(spec, config, x[:rows], y[:rows], callbacks=callbacks, resume=resume)
    dist.destroy_process_group()
    return {
        "weights": {k: v.detach().clone() for k, v in result.model.state_dict().items()},
        "metrics": result.metrics,
        "history": result.history,
        "steps": result.steps,
        "events": callbacks.events,
        "resumed_from": None if resume is None else int(resume["global_step"]),
        "restarts": restart_count(),
    }


def shuffled_digits() -> tuple[np.ndarray, np.ndarray]:
    """The digits in a fixed random order (the file's order drifts from writer to writer)."""
    x, y = digits()
    order = np.random.default_rng(0).permutation(len(x))
    return x[order], y[order]


def ps_rank(spec: dict[str, Any], config: dict[str, Any], train_rows: int) -> dict[str, Any] | None:
    """Parameter-server training on the first ``train_rows`` shuffled digits; rank 0
    returns the weights."""
    import torch.distributed as dist  # noqa: F401

    from modelyard.training.param_server import run_rank

    torch.set_num_threads(1)
    x, y = shuffled_digits()
    callbacks = FileCallbacks(Path(os.devnull))
    result = run_rank(
        int(os.environ["RANK"]),
        int(os.environ["WORLD_SIZE"]),
        spec,
        config,
        x[:train_rows],
        y[:train_rows],
        staleness=2,
        callbacks=callbacks,
    )
    if result is None:
        return None
    return {
        "weights": {k: v.detach().clone() for k, v in result.model.state_dict().items()},
        "steps": result.steps,
        "history": result.history,
        "events": callbacks.events,
    }


def private_ddp_rank(spec: dict[str, Any], config: dict[str, Any], rows: int) -> dict[str, Any]:
    """A private (DP-SGD) data-parallel run on the first ``rows`` digits."""
    import torch.distributed as dist

    from modelyard.training.ddp import train_ddp
    from modelyard.training.distributed import init_group

    torch.set_num_threads(1)
    init_group(torch.device("cpu"))
    x, y = digits()
    result = train_ddp(spec, config, x[:rows], y[:rows])
    dist.destroy_process_group()
    return {
        "weights": {k: v.detach().clone() for k, v in result.model.state_dict().items()},
        "privacy": result.privacy,
        "steps": result.steps,
        "metrics": result.metrics,
    }
