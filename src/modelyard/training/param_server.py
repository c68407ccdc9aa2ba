"""Asynchronous SGD against a parameter server, on :mod:`torch.distributed.rpc`.

Rank 0 holds the model and the optimizer (:class:`ParameterServer`); ranks ``1 … N`` are
workers. A worker computes the gradient of a mini-batch of its data partition (a
:class:`~torch.utils.data.DistributedSampler` share) on its copy of the weights, pushes it
with the version of the weights it used, and gets fresh weights back. The server applies a
gradient when it is at most ``staleness`` updates old and drops it otherwise (the worker
then continues from the fresh weights): bounded-staleness asynchronous SGD. Nobody waits
for anybody, so a slow worker does not hold the others back, but the result depends on
timing and is not reproducible step for step the way DDP is.

Call :func:`run_rank` in every rank of a group started by the elastic launcher
(:func:`modelyard.training.distributed.launch`, ``workers + 1`` processes).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed.rpc as rpc
from torch.utils.data import DistributedSampler

from modelyard.nn.catalog import ArchSpec, head_name
from modelyard.training.callbacks import BaseCallbacks, TrainCallbacks
from modelyard.training.config import TrainConfig
from modelyard.training.dataset import PreparedData
from modelyard.training.ddp import _ByIndex, sampler_seed
from modelyard.training.loop import build_parts, check_inputs
from modelyard.training.metrics import run_eval
from modelyard.training.objective import Objective
from modelyard.training.optim import build_optimizer
from modelyard.training.preprocess import ArrayLike
from modelyard.training.result import TrainResult
from modelyard.training.rng import isolated_rng

SERVER = "ps"


@dataclass
class Reply:
    """What a push returns: the server's version, its weights, and whether to stop."""

    version: int
    weights: list[torch.Tensor]
    applied: bool
    stop: bool


class ParameterServer:
    """The model's weights and optimizer; applies pushed gradients one at a time."""

    def __init__(
        self,
        model: torch.nn.Module,
        config: TrainConfig,
        staleness: int,
        total_updates: int,
        callbacks: TrainCallbacks,
    ) -> None:
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(config.optimizer, self.params)
        self.config = config
        self.staleness = staleness
        self.total_updates = max(1, total_updates)
        self.callbacks = callbacks
        self.version = 0
        self.dropped = 0
        self.stop = False
        self.losses: list[float] = []
        self.lock = threading.Lock()

    def weights(self) -> list[torch.Tensor]:
        """Copies of the trainable weights."""
        return [p.detach().clone() for p in self.params]

    def pull(self) -> Reply:
        with self.lock:
            return Reply(self.version, self.weights(), False, self.stop)

    def push(self, base_version: int, grads: list[torch.Tensor], loss: float) -> Reply:
        """Apply ``grads`` (computed on weights of ``base_version``) unless too stale."""
        with self.lock:
            if self.version - base_version > self.staleness:
                self.dropped += 1
                return Reply(self.version, self.weights(), False, self.stop)
            for param, grad in zip(self.params, grads, strict=True):
                param.grad = grad
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.version += 1
            self.losses.append(loss)
            if self.version % self.config.log_every_steps == 0:
                self._report()
            if self.callbacks.should_stop():
                self.stop = True
            return Reply(self.version, self.weights(), True, self.stop)

    def _report(self) -> None:
        window = self.losses[-self.config.log_every_steps :]
        self.callbacks.on_event(
            {
                "type": "step",
                "step": self.version,
                "loss": sum(window) / len(window),
                "lr": self.config.optimizer.lr,
                "dropped_stale": self.dropped,
                "progress": min(1.0, self.version / self.total_updates),
            }
        )


_server: ParameterServer | None = None


def _pull() -> Reply:
    assert _server is not None
    return _server.pull()


def _push(base_version: int, grads: list[torch.Tensor], loss: float) -> Reply:
    assert _server is not None
    return _server.push(base_version, grads, loss)


def _prepare(
    spec: ArchSpec | Mapping[str, Any],
    config: TrainConfig | Mapping[str, Any],
    x_train: ArrayLike,
    y_train: ArrayLike,
    x_val: ArrayLike | None,
    y_val: ArrayLike | None,
) -> tuple[ArchSpec, TrainConfig, Objective, PreparedData, torch.nn.Module]:
    parts = check_inputs(spec, config, x_train, y_train, x_val, y_val, None)
    build_parts(parts, x_train, y_train, x_val, y_val, None, None)
    return parts.spec, parts.config, parts.objective, parts.data, parts.model


def _steps_per_worker(rows: int, workers: int, batch: int | None) -> int:
    share = math.ceil(rows / workers)
    return math.ceil(share / min(batch or share, share))


def run_rank(
    rank: int,
    world_size: int,
    spec: ArchSpec | Mapping[str, Any],
    config: TrainConfig | Mapping[str, Any],
    x_train: ArrayLike,
    y_train: ArrayLike,
    *,
    x_val: ArrayLike | None = None,
    y_val: ArrayLike | None = None,
    staleness: int = 4,
    callbacks: TrainCallbacks | None = None,
) -> TrainResult | None:
    """Serve (rank 0: returns the trained model) or work (other ranks: return None).

    Joins the RPC group the launcher described in the environment (``env://``); every rank
    passes the same data, spec and config. ``config.batch_size`` is each worker's batch.
    """
    global _server
    options = rpc.TensorPipeRpcBackendOptions(init_method="env://", rpc_timeout=300)
    with isolated_rng():
        parsed, cfg, objective, data, model = _prepare(spec, config, x_train, y_train, x_val, y_val)
        workers = world_size - 1
        if rank == 0:
            steps = _steps_per_worker(data.x_train.shape[0], workers, cfg.batch_size)
            _server = ParameterServer(
                model, cfg, staleness, steps * workers * cfg.epochs, callbacks or BaseCallbacks()
            )
            rpc.init_rpc(  # type: ignore[no-untyped-call]
                SERVER, rank=rank, world_size=world_size, rpc_backend_options=options
            )
            rpc.shutdown()  # waits until every worker has finished
            server, _server = _server, None
            return _result(parsed, cfg, objective, data, server)
        rpc.init_rpc(  # type: ignore[no-untyped-call]
            f"worker{rank}", rank=rank, world_size=world_size, rpc_backend_options=options
        )
        try:
            _work(rank - 1, workers, cfg, objective, data, model)
        finally:
            rpc.shutdown()
        return None


def _work(
    index: int,
    workers: int,
    config: TrainConfig,
    objective: Objective,
    data: PreparedData,
    model: torch.nn.Module,
) -> None:
    rows = data.x_train.shape[0]
    sampler: DistributedSampler[int] = DistributedSampler(
        _ByIndex(rows), num_replicas=workers, rank=index, seed=sampler_seed(config.seed)
    )
    batch = min(config.batch_size or sampler.num_samples, sampler.num_samples)
    params = [p for p in model.parameters() if p.requires_grad]
    scaler = data.scaler
    reply: Reply = rpc.rpc_sync(SERVER, _pull)
    model.train()
    for epoch in range(config.epochs):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), dtype=torch.long)
        for start in range(0, len(order), batch):
            with torch.no_grad():
                for param, value in zip(params, reply.weights, strict=True):
                    param.copy_(value)
            index_rows = order[start : start + batch]
            x, y = data.x_train[index_rows], data.y_train[index_rows]
            target = scaler.to_model(y) if scaler is not None else y
            loss = objective(model(x), target)
            model.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            reply = rpc.rpc_sync(SERVER, _push, args=(reply.version, grads, float(loss.detach())))
            if reply.stop:
                return


def _result(
    spec: ArchSpec,
    config: TrainConfig,
    objective: Objective,
    data: PreparedData,
    server: ParameterServer,
) -> TrainResult:
    model = server.model
    if data.scaler is not None:
        data.scaler.fold_into(getattr(model, head_name(spec)))
    model.eval()
    size = config.eval_batch_size
    metrics = {"train": run_eval(model, data.x_train, data.y_train, objective, batch_size=size)}
    metrics["val"] = {}
    if data.x_val is not None and data.y_val is not None:
        metrics["val"] = run_eval(model, data.x_val, data.y_val, objective, batch_size=size)
    summary = {"updates": server.version, "dropped_stale": server.dropped}
    server.callbacks.on_event({"type": "parameter_server", **summary})
    return TrainResult(
        model=model,
        spec=spec,
        metrics=metrics,
        history=[{"epoch": config.epochs, **summary, "train": metrics["train"]}],
        steps=server.version,
        epochs_run=config.epochs,
        stopped_early=False,
        cancelled=server.stop,
        preprocessing=data.preprocessor.to_dict(),
        best=None,
        device="cpu",
    )


__all__ = ["ParameterServer", "Reply", "run_rank"]
