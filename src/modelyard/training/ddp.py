"""Data-parallel training: :func:`train_ddp` runs in every rank of a process group.

It is the single-process loop (:func:`modelyard.training.train`) with three changes:

- the model is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`, which
  averages gradients across ranks (gloo on the CPU, nccl on GPUs);
- each rank takes its share of every epoch through a
  :class:`~torch.utils.data.DistributedSampler` whose permutation is the single-process
  epoch order, so step ``k`` of all ranks together is exactly the single-process batch
  ``k`` of the global batch size (``config.batch_size``), split ``batch_size / world``
  rows per rank. With a mean-reduced loss the averaged gradient is the big-batch gradient;
- metrics are summed over ranks before they are reported, and only rank 0 emits events and
  checkpoints (the other ranks only compute). A checkpoint carries the merged running
  metrics, so a group restarted from it reports what an uninterrupted one would have.

A cancellation seen by rank 0 stops every rank at the same step (ranks agree on it every
:data:`STOP_CHECK_EVERY_STEPS` steps).

A private run (``config.privacy``) is not wrapped in DDP: every rank draws the same Poisson
sample of all rows at each step (from the secret seed rank 0 drew) and takes every
``world``-th of its rows; each clips its examples' gradients, Opacus's distributed optimizer
adds the noise once (on rank 0) and sums the ranks' gradients, so the group takes exactly
the single-process private step, and every rank's accountant counts it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler

from modelyard.errors import InvalidInput
from modelyard.nn.catalog import ArchSpec
from modelyard.training.callbacks import BaseCallbacks, TrainCallbacks
from modelyard.training.config import TrainConfig
from modelyard.training.distributed import rank_device
from modelyard.training.loop import _Run, build_parts, check_inputs
from modelyard.training.metrics import MetricTracker
from modelyard.training.objective import Objective
from modelyard.training.preprocess import ArrayLike
from modelyard.training.result import TrainResult
from modelyard.training.rng import isolated_rng

# How often the ranks agree on whether to stop (a cancel takes at most this many steps).
STOP_CHECK_EVERY_STEPS = 8


def sampler_seed(seed: int) -> int:
    """The sampler seed whose epoch-``e`` permutation is :func:`epoch_order` ``(seed, e)``."""
    return seed * 1_000_003


def _reduce(values: list[float], device: torch.device, op: Any = None) -> list[float]:
    """Element-wise sum (or ``op``) of ``values`` over all ranks."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=op if op is not None else dist.ReduceOp.SUM)
    result: list[float] = tensor.tolist()
    return result


_SCALARS = ("count", "loss", "correct", "judged")
_LISTS = ("sse", "sae", "sum_y", "sum_y2")


def _merged(tracker: MetricTracker, device: torch.device) -> dict[str, Any]:
    """The tracker's running sums added up over all ranks (a state dict)."""
    state = tracker.state_dict()
    flat = [float(state[k]) for k in _SCALARS]
    for key in _LISTS:
        flat.extend(state[key])
    summed = _reduce(flat, device)
    merged: dict[str, Any] = {k: summed[i] for i, k in enumerate(_SCALARS)}
    merged["count"] = round(merged["count"])
    at = len(_SCALARS)
    for key in _LISTS:
        width = len(state[key])
        merged[key] = summed[at : at + width]
        at += width
    return merged


class _ByIndex(Dataset[int]):
    """Row numbers ``0 … rows-1``: what the sampler partitions."""

    def __init__(self, rows: int) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, index: int) -> int:
        return index


class _DdpRun(_Run):
    """The single-process loop, its forward pass through DDP and its data split by rank."""

    def __init__(
        self,
        spec: ArchSpec,
        config: TrainConfig,
        objective: Objective,
        data: Any,
        model: nn.Module,
        frozen: list[nn.Module],
        callbacks: TrainCallbacks,
        device: torch.device,
    ) -> None:
        super().__init__(spec, config, objective, data, model, frozen, callbacks, device)
        self.world = dist.get_world_size()
        self.rank = dist.get_rank()
        self.comm_device = device if dist.get_backend() == "nccl" else torch.device("cpu")
        self.inner = model
        if self.privacy is not None:
            self._share_privacy(model)
            return
        global_batch = self.batch_size
        if global_batch % self.world and global_batch != self.rows:
            raise InvalidInput(
                f"config.batch_size: {global_batch} rows do not split evenly over "
                f"{self.world} workers; give a multiple of {self.world}"
            )
        self.sampler: DistributedSampler[int] = DistributedSampler(
            _ByIndex(self.rows),
            num_replicas=self.world,
            rank=self.rank,
            shuffle=True,
            seed=sampler_seed(config.seed),
            drop_last=False,
        )
        self.batch_size = math.ceil(global_batch / self.world)
        self.steps_per_epoch = math.ceil(self.sampler.num_samples / self.batch_size)
        self.total_steps = config.epochs * self.steps_per_epoch
        ids = [device.index] if device.type == "cuda" else None
        self.ddp = DistributedDataParallel(model, device_ids=ids)

    def _group(self) -> tuple[int, int]:
        return dist.get_world_size(), dist.get_rank()

    def _share_privacy(self, model: nn.Module) -> None:
        """Every rank starts from rank 0's weights and samples with rank 0's secret."""
        assert self.privacy is not None
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, 0)
        secret = [self.privacy.secret]
        dist.broadcast_object_list(secret, 0)
        self.privacy.secret = int(secret[0])
        self.privacy.noise.manual_seed(self.privacy.secret)

    def load(self, checkpoint: Mapping[str, Any]) -> None:
        super().load(checkpoint)
        if self.rank != 0:
            # The checkpoint's running sums are the whole group's; rank 0 carries them.
            state = self.running.state_dict()
            zeroed = {k: 0 for k in _SCALARS} | {k: [0.0] * len(state[k]) for k in _LISTS}
            self.running.load_state_dict(zeroed)

    def checkpoint(self) -> dict[str, Any]:
        current, self.model = self.model, self.inner
        try:
            state = super().checkpoint()
        finally:
            self.model = current
        state["running"] = _merged(self.running, self.comm_device)
        return state

    def execute(self) -> TrainResult:
        while self.epoch < self.config.epochs and not self.stopped_early:
            order = torch.empty(0, dtype=torch.long)  # a private run samples its own rows
            if self.privacy is None:
                self.sampler.set_epoch(self.epoch)
                order = torch.tensor(list(self.sampler), dtype=torch.long)
            self._train_mode()
            while self.step_in_epoch < self.steps_per_epoch:
                if self._stop_requested():
                    self.callbacks.save_checkpoint(self.checkpoint())
                    return self._finish(cancelled=True)
                self._step(order)
            self._end_epoch()
        return self._finish(cancelled=False)

    def _stop_requested(self) -> bool:
        # Every rank takes part in the same checks, so they stop at the same step; not every
        # step, since each check is a collective of its own on the step's critical path.
        if self.global_step % STOP_CHECK_EVERY_STEPS:
            return False
        local = 1.0 if self.callbacks.should_stop() else 0.0
        return _reduce([local], self.comm_device, dist.ReduceOp.MAX)[0] > 0

    def _step(self, order: torch.Tensor) -> None:
        if self.privacy is not None:
            # Opacus's distributed optimizer sums the ranks' noisy gradients itself.
            super()._step(order)
            return
        # The parent's step, its forward (and so its backward) going through DDP.
        self.model = self.ddp
        try:
            super()._step(order)
        finally:
            self.model = self.inner

    def _log_step(self, loss: float) -> None:
        mean = _reduce([loss], self.comm_device)[0] / self.world
        self._log_rows *= self.world
        super()._log_step(mean)

    def _end_epoch(self) -> None:
        self.running.load_state_dict(_merged(self.running, self.comm_device))
        super()._end_epoch()


def train_ddp(
    spec: ArchSpec | Mapping[str, Any],
    config: TrainConfig | Mapping[str, Any],
    x_train: ArrayLike,
    y_train: ArrayLike,
    *,
    x_val: ArrayLike | None = None,
    y_val: ArrayLike | None = None,
    init_weights: Mapping[str, torch.Tensor] | None = None,
    callbacks: TrainCallbacks | None = None,
    resume: Mapping[str, Any] | None = None,
) -> TrainResult:
    """:func:`modelyard.training.train` as one rank of an initialised process group.

    Every rank passes the same data, spec, config and ``resume``; ``config.batch_size`` is
    the global batch. ``callbacks`` are used on rank 0 only (events, checkpoints and the
    stop signal); every rank returns the same trained model.
    """
    if not dist.is_initialized():
        raise RuntimeError("train_ddp: join a process group first (training.distributed)")
    parts = check_inputs(spec, config, x_train, y_train, x_val, y_val, resume)
    device = rank_device(parts.config.device)
    chosen = callbacks if callbacks is not None and dist.get_rank() == 0 else BaseCallbacks()
    with isolated_rng():
        build_parts(parts, x_train, y_train, x_val, y_val, init_weights, resume)
        parts.model.to(device)
        run = _DdpRun(
            parts.spec,
            parts.config,
            parts.objective,
            parts.data,
            parts.model,
            parts.frozen,
            chosen,
            device,
        )
        if resume is not None:
            run.load(resume)
        return run.execute()
