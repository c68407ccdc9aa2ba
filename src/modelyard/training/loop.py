"""The training loop: ``train(spec, config, x, y)`` returns a :class:`TrainResult`.

Read top to bottom: :func:`train` validates and prepares, :class:`_Run` loops over epochs
and steps. Every source of randomness is pinned so that a run resumed from any of its
checkpoints ends with exactly the weights of an uninterrupted one (same seed, CPU):

- weights are initialised after ``seed_everything(config.seed)``;
- each epoch's data order is a pure function of ``(seed, epoch)``;
- the learning rate is a pure function of the global step (:func:`lr_at`);
- a checkpoint carries the model, optimizer, RNG states (dropout), counters, the running
  epoch metrics, early-stopping state and the fitted preprocessing.

A step does what a hand-written PyTorch loop does and little more: its loss is kept as a
tensor, read (and checked to be finite) only when something leaves the loop (a step event,
a checkpoint, the end of an epoch), and the running metrics reuse it instead of computing
the loss a second time. Nothing in a step waits for the device.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from modelyard.errors import InvalidInput
from modelyard.nn.catalog import ArchSpec, build_model, head_name, parse_spec
from modelyard.training.callbacks import BaseCallbacks, TrainCallbacks
from modelyard.training.checkpoint import FORMAT
from modelyard.training.config import TrainConfig, parse_config
from modelyard.training.data import check_fit
from modelyard.training.dataset import PreparedData, prepare_data
from modelyard.training.device import resolve_device
from modelyard.training.early_stopping import EarlyStopping
from modelyard.training.finetune import freeze, load_initial_weights
from modelyard.training.metrics import MetricTracker, run_eval
from modelyard.training.objective import Objective
from modelyard.training.optim import build_optimizer
from modelyard.training.preprocess import ArrayLike
from modelyard.training.result import TrainResult
from modelyard.training.rng import capture_rng, isolated_rng, restore_rng, seed_everything
from modelyard.training.schedule import lr_at

if TYPE_CHECKING:
    from modelyard.training.privacy import PrivateTraining

# Config fields a resumed run may change without changing what it computes.
_RESUMABLE_CHANGES = frozenset({"epochs", "device", "log_every_steps", "checkpoint_every_steps"})
# Data sets up to this size are moved to the GPU once rather than batch by batch.
_DEVICE_DATA_BYTES = 1 << 30
# Steps whose loss may wait, unread, before it is checked to be finite.
_UNCHECKED_STEPS = 256


def epoch_order(seed: int, epoch: int, rows: int) -> torch.Tensor:
    """The order of the rows in epoch ``epoch`` (0-based): a pure function of its inputs."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(rows, generator=generator)


def _private_copy(value: Any) -> Any:
    """A copy of a state dict's tree with every tensor copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _private_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_private_copy(v) for v in value)
    return value


def train(
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
    """Train ``spec``'s model on ``x_train``/``y_train`` as ``config`` says.

    ``x_*`` are raw features (numpy, memory-mapped arrays or tensors): the recorded
    preprocessing is fitted on the training rows and applied here. Without ``x_val``,
    ``config.validation.fraction`` of the rows is held out. ``init_weights`` starts from
    existing weights (fine-tuning; see ``config.replace_head`` and ``config.freeze``).
    ``resume`` is a checkpoint from :meth:`TrainCallbacks.save_checkpoint` (or
    :func:`checkpoint_from_bytes`) of the same spec and config.

    >>> result = train({"arch": "mlp", "input_shape": [4], "hidden": [16], "num_outputs": 3},
    ...                {"epochs": 20, "optimizer": {"name": "adam", "lr": 0.01}}, x, y)
    ...                                                  # doctest: +SKIP
    """
    parts = check_inputs(spec, config, x_train, y_train, x_val, y_val, resume)
    device = resolve_device(parts.config.device)
    with isolated_rng():
        build_parts(parts, x_train, y_train, x_val, y_val, init_weights, resume)
        parts.model.to(device)
        run = _Run(
            parts.spec,
            parts.config,
            parts.objective,
            parts.data,
            parts.model,
            parts.frozen,
            callbacks or BaseCallbacks(),
            device,
        )
        if resume is not None:
            run.load(resume)
        return run.execute()


@dataclass
class RunParts:
    """What a training run is made of: checked inputs, then (built) data and model."""

    spec: ArchSpec
    config: TrainConfig
    objective: Objective
    data: PreparedData = field(init=False)
    model: nn.Module = field(init=False)
    frozen: list[nn.Module] = field(init=False)


def check_inputs(
    spec: ArchSpec | Mapping[str, Any],
    config: TrainConfig | Mapping[str, Any],
    x_train: ArrayLike,
    y_train: ArrayLike,
    x_val: ArrayLike | None,
    y_val: ArrayLike | None,
    resume: Mapping[str, Any] | None,
) -> RunParts:
    """Parse the spec and config and check that the data (and ``resume``) fit them."""
    parsed = parse_spec(spec)
    cfg = parse_config(config)
    objective = Objective.resolve(parsed, cfg)
    check_fit(parsed, cfg, tuple(x_train.shape), x_train.dtype, y_train)
    if (x_val is None) != (y_val is None):
        raise InvalidInput("validation: give both x_val and y_val, or neither")
    if x_val is not None and y_val is not None:
        check_fit(parsed, cfg, tuple(x_val.shape), x_val.dtype, y_val, split="validation")
    if resume is not None:
        _check_resumable(resume, parsed, cfg)
    return RunParts(parsed, cfg, objective)


def build_parts(
    parts: RunParts,
    x_train: ArrayLike,
    y_train: ArrayLike,
    x_val: ArrayLike | None,
    y_val: ArrayLike | None,
    init_weights: Mapping[str, torch.Tensor] | None,
    resume: Mapping[str, Any] | None,
) -> None:
    """Seed, prepare the data and build the model (on the CPU) of ``parts``.

    Call it inside :func:`isolated_rng`: it seeds every generator from ``config.seed``.
    """
    parsed, cfg = parts.spec, parts.config
    seed_everything(cfg.seed)
    recorded = resume["preprocessing"] if resume is not None else None
    data = prepare_data(parsed, cfg, parts.objective, x_train, y_train, x_val, y_val, recorded)
    model = build_model(parsed, private=cfg.privacy is not None)
    if init_weights is not None and resume is None:
        load_initial_weights(model, parsed, init_weights, replace_head=cfg.replace_head)
        scaler = data.scaler
        if scaler is not None and not cfg.replace_head:
            # A regression model was saved predicting in the data's units.
            scaler.unfold_from(getattr(model, head_name(parsed)))
    parts.data, parts.model, parts.frozen = data, model, freeze(model, cfg.freeze)


def _check_resumable(resume: Mapping[str, Any], spec: ArchSpec, config: TrainConfig) -> None:
    if resume.get("format") != FORMAT:
        raise InvalidInput("resume: not a Modelyard training checkpoint")
    if resume.get("spec") != spec.model_dump(mode="json"):
        raise InvalidInput("resume: the checkpoint was written for a different spec")
    saved = dict(resume.get("config") or {})
    current = config.model_dump(mode="json")
    changed = sorted(k for k in current.keys() | saved.keys() if saved.get(k) != current.get(k))
    resumable = _RESUMABLE_CHANGES
    if config.privacy is not None:
        resumable = resumable - {"epochs"}  # the noise was chosen for the planned steps
    changed = [k for k in changed if k not in resumable]
    if changed:
        raise InvalidInput(
            f"resume: the checkpoint was written with a different config ({', '.join(changed)})"
        )


class _Run:
    """One run's loop state: counters, history, the running epoch metrics."""

    def __init__(
        self,
        spec: ArchSpec,
        config: TrainConfig,
        objective: Objective,
        data: PreparedData,
        model: nn.Module,
        frozen: list[nn.Module],
        callbacks: TrainCallbacks,
        device: torch.device,
    ):
        self.spec, self.config, self.objective, self.data = spec, config, objective, data
        self.model, self.frozen, self.callbacks, self.device = model, frozen, callbacks, device
        trainable = [p for p in model.parameters() if p.requires_grad]
        if not trainable:
            raise InvalidInput("config.freeze: every parameter is frozen; nothing would train")
        self.optimizer = build_optimizer(config.optimizer, trainable)
        self.scaler = data.scaler
        self.rows = data.x_train.shape[0]
        self.batch_size = min(config.batch_size or self.rows, self.rows)
        self.steps_per_epoch = math.ceil(self.rows / self.batch_size)
        self.total_steps = config.epochs * self.steps_per_epoch
        self.privacy: PrivateTraining | None = None
        if config.privacy is not None:
            self.privacy = self._private(model)
            self.optimizer = self.privacy.optimizer
        self.x_train, self.y_train = data.x_train, data.y_train
        if device.type != "cpu" and data.x_train.nbytes + data.y_train.nbytes < _DEVICE_DATA_BYTES:
            self.x_train, self.y_train = data.x_train.to(device), data.y_train.to(device)
        self.epoch = 0  # completed epochs; also the 0-based index of the current one
        self.step_in_epoch = 0
        self.global_step = 0
        self.lr = config.optimizer.lr
        self.history: list[dict[str, Any]] = []
        self.stopped_early = False
        self.running = MetricTracker(objective)
        # The losses of the steps since the last check, from global step ``_unchecked_from``.
        self._unchecked: list[torch.Tensor] = []
        self._unchecked_from = 0
        self._last_loss = math.nan
        self.stopper: EarlyStopping | None = None
        if config.early_stopping is not None:
            if config.early_stopping.split == "val" and data.x_val is None:
                raise InvalidInput(
                    f"config.early_stopping.metric: {config.early_stopping.metric} needs "
                    "validation data; set config.validation.fraction or give a validation set"
                )
            self.stopper = EarlyStopping(config.early_stopping)
        self._started = time.perf_counter()
        self._steps_this_session = 0
        self._log_time = self._started
        self._log_rows = 0

    def load(self, checkpoint: Mapping[str, Any]) -> None:
        """Continue from a checkpoint of :meth:`checkpoint`."""
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.epoch = int(checkpoint["epoch"])
        self.step_in_epoch = int(checkpoint["step_in_epoch"])
        self.global_step = int(checkpoint["global_step"])
        self.lr = float(checkpoint["scheduler"]["lr"])
        self.history = list(checkpoint["history"])
        self.stopped_early = bool(checkpoint["stopped_early"])
        self.running.load_state_dict(checkpoint["running"])
        if self.privacy is not None:
            self.privacy.load_state_dict(checkpoint["privacy"])
        if self.stopper is not None and checkpoint.get("early_stopping") is not None:
            self.stopper.load_state_dict(checkpoint["early_stopping"])
        # Last, so that nothing above draws from the restored generators.
        restore_rng(checkpoint["rng"])

    def checkpoint(self) -> dict[str, Any]:
        """The explicit checkpoint dict; its tensors are private CPU copies."""
        self._check_losses()
        return {
            "format": FORMAT,
            "spec": self.spec.model_dump(mode="json"),
            "config": self.config.model_dump(mode="json"),
            "model": _private_copy(self.model.state_dict()),
            "optimizer": _private_copy(self.optimizer.state_dict()),
            "scheduler": {
                "name": self.config.schedule.name,
                "last_step": self.global_step,
                "lr": self.lr,
            },
            "rng": _private_copy(capture_rng()),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "running": self.running.state_dict(),
            "history": _private_copy(self.history),
            "early_stopping": _private_copy(self.stopper.state_dict()) if self.stopper else None,
            "stopped_early": self.stopped_early,
            "preprocessing": self.data.preprocessor.to_dict(),
            **({"privacy": self.privacy.state_dict()} if self.privacy is not None else {}),
        }

    def _private(self, model: nn.Module) -> PrivateTraining:
        """Private training's clipping, noise, sampling and accountant for this run."""
        # Opacus is loaded only by private runs.
        from modelyard.training.privacy import PrivateTraining, plan_privacy

        assert self.config.privacy is not None
        plan = plan_privacy(
            self.config.privacy,
            rows=self.rows,
            batch_size=self.batch_size,
            epochs=self.config.epochs,
        )
        world, rank = self._group()
        return PrivateTraining(model, self.optimizer, plan, rows=self.rows, world=world, rank=rank)

    def _group(self) -> tuple[int, int]:
        """The number of ranks training together, and this one's."""
        return 1, 0

    def execute(self) -> TrainResult:
        """Run the remaining epochs; returns early, cancelled, when asked to stop."""
        while self.epoch < self.config.epochs and not self.stopped_early:
            order = epoch_order(self.config.seed, self.epoch, self.rows)
            self._train_mode()
            while self.step_in_epoch < self.steps_per_epoch:
                if self.callbacks.should_stop():
                    self.callbacks.save_checkpoint(self.checkpoint())
                    return self._finish(cancelled=True)
                self._step(order)
            self._end_epoch()
        return self._finish(cancelled=False)

    def _train_mode(self) -> None:
        self.model.train()
        for module in self.frozen:
            module.eval()

    def _rows(self, order: torch.Tensor) -> torch.Tensor:
        """The rows of this step: the next batch of ``order``, or a private run's sample."""
        if self.privacy is not None:
            return self.privacy.batch(self.global_step)
        start = self.step_in_epoch * self.batch_size
        return order[start : start + self.batch_size]

    def _step(self, order: torch.Tensor) -> None:
        index = self._rows(order).to(self.x_train.device)
        self.lr = lr_at(
            self.config.schedule,
            self.config.optimizer.lr,
            self.global_step,
            self.steps_per_epoch,
            self.total_steps,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        if index.numel():
            self._learn(index)
        elif self.privacy is not None:
            self.privacy.empty_step()  # Poisson sampling drew no row: the noise still counts
        if self.privacy is not None:
            self.privacy.stepped()
        self.global_step += 1
        self.step_in_epoch += 1
        self._steps_this_session += 1
        every = self.config.checkpoint_every_steps
        if every and self.global_step % every == 0:
            self.callbacks.save_checkpoint(self.checkpoint())
        if self.global_step % self.config.log_every_steps == 0:
            self._log_step(self._check_losses())
        elif len(self._unchecked) >= _UNCHECKED_STEPS:
            self._check_losses()

    def _learn(self, index: torch.Tensor) -> None:
        """One optimizer step on the rows ``index``."""
        # index_select copies whole rows; indexing (x[index]) is several times slower on CPU.
        x = self.x_train.index_select(0, index).to(self.device, non_blocking=True)
        y = self.y_train.index_select(0, index).to(self.device, non_blocking=True)
        outputs = self.model(x)
        target = self.scaler.to_model(y) if self.scaler is not None else y
        loss = self.objective(outputs, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        if self.config.grad_clip_norm is not None:
            params = [p for p in self.model.parameters() if p.requires_grad]
            torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip_norm)
        self.optimizer.step()
        loss = loss.detach()
        if not self._unchecked:
            self._unchecked_from = self.global_step
        self._unchecked.append(loss)
        if self.scaler is not None:
            # The loss is in the model's units; the metrics are in the data's.
            self.running.update(self.scaler.to_raw(outputs.detach()), y)
        else:
            self.running.update(outputs, y, loss)
        self._log_rows += x.shape[0]

    def _check_losses(self) -> float:
        """The last step's loss; InvalidInput naming the first step whose loss is not finite.

        Reads the losses of every step since the last check at once (one wait for the device).
        """
        if self._unchecked:
            values = torch.stack(self._unchecked).tolist()
            self._unchecked = []
            for offset, value in enumerate(values):
                if not math.isfinite(value):
                    raise InvalidInput(
                        f"config.optimizer.lr: the loss became {value} at step "
                        f"{self._unchecked_from + offset}; lower the learning rate or clip "
                        "gradients (grad_clip_norm)"
                    )
            self._last_loss = float(values[-1])
        return self._last_loss

    def _log_step(self, loss: float) -> None:
        now = time.perf_counter()
        elapsed = max(now - self._log_time, 1e-9)
        self.callbacks.on_event(
            {
                "type": "step",
                "epoch": self.epoch + 1,
                "step": self.global_step,
                "loss": loss,
                "lr": self.lr,
                "samples_per_s": self._log_rows / elapsed,
                **self._privacy_spent(),
            }
        )
        self._log_time, self._log_rows = now, 0

    def _privacy_spent(self) -> dict[str, Any]:
        """``{"privacy": {"epsilon", "delta", "step"}}`` of a private run: ε spent so far."""
        return {"privacy": self.privacy.spent()} if self.privacy is not None else {}

    def _eta(self) -> float | None:
        if not self._steps_this_session:
            return None
        per_step = (time.perf_counter() - self._started) / self._steps_this_session
        return per_step * (self.total_steps - self.global_step)

    def _end_epoch(self) -> None:
        self._check_losses()
        train_metrics = self.running.compute()
        val_metrics: dict[str, float] = {}
        if self.data.x_val is not None and self.data.y_val is not None:
            val_metrics = run_eval(
                self.model,
                self.data.x_val,
                self.data.y_val,
                self.objective,
                batch_size=self.config.eval_batch_size,
                output_transform=self.scaler.to_raw if self.scaler is not None else None,
            )
        self.history.append(
            {"epoch": self.epoch + 1, "lr": self.lr, "train": train_metrics, "val": val_metrics}
        )
        self.epoch += 1
        self.step_in_epoch = 0
        self.running.reset()
        self.callbacks.on_event(
            {
                "type": "epoch",
                "epoch": self.epoch,
                "epochs": self.config.epochs,
                "step": self.global_step,
                "train": train_metrics,
                "val": val_metrics,
                "lr": self.lr,
                "progress": self.global_step / self.total_steps,
                "eta_s": self._eta(),
                **self._privacy_spent(),
            }
        )
        if self.stopper is not None:
            metrics = val_metrics if self.stopper.config.split == "val" else train_metrics
            value = metrics.get(self.stopper.config.metric_name, math.nan)
            if self.stopper.update(value, self.epoch, self.model):
                self.stopped_early = True
                self.callbacks.on_event(
                    {"type": "early_stop", "epoch": self.epoch, "best": self.stopper.summary()}
                )
        if self.config.checkpoint_every_steps == 0:
            self.callbacks.save_checkpoint(self.checkpoint())

    def _finish(self, *, cancelled: bool) -> TrainResult:
        privacy = None
        if self.privacy is not None:
            privacy = self.privacy.summary()
            self.model = self._plain_model(self.privacy)
        stopper = self.stopper
        if not cancelled and stopper is not None and stopper.best_state is not None:
            self.model.load_state_dict(stopper.best_state)
        if self.scaler is not None:
            self.scaler.fold_into(getattr(self.model, head_name(self.spec)))
        self.model.eval()
        if cancelled:
            last = self.history[-1] if self.history else {"train": {}, "val": {}}
            metrics = {"train": last["train"], "val": last["val"]}
        else:
            metrics = self._final_metrics()
        return TrainResult(
            model=self.model,
            spec=self.spec,
            metrics=metrics,
            history=self.history,
            steps=self.global_step,
            epochs_run=self.epoch,
            stopped_early=self.stopped_early,
            cancelled=cancelled,
            preprocessing=self.data.preprocessor.to_dict(),
            best=stopper.summary() if stopper is not None else None,
            device=str(self.device),
            privacy=privacy,
        )

    def _plain_model(self, private: PrivateTraining) -> nn.Module:
        """The catalog's own model with the private run's weights (without Opacus's hooks
        and DP layers), for the version and for serving."""
        from modelyard.training.privacy import plain_model

        return plain_model(private.close(), self.spec)

    def _final_metrics(self) -> dict[str, dict[str, float]]:
        # The head now predicts in the data's units, so no output transform is needed.
        size = self.config.eval_batch_size
        data = self.data
        metrics = {
            "train": run_eval(
                self.model, data.x_train, data.y_train, self.objective, batch_size=size
            )
        }
        metrics["val"] = {}
        if data.x_val is not None and data.y_val is not None:
            metrics["val"] = run_eval(
                self.model, data.x_val, data.y_val, self.objective, batch_size=size
            )
        return metrics
