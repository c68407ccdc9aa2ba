"""Training any module on prepared tensors: fine-tuning after compression, and distillation.

Unlike :func:`modelyard.training.train`, which builds a catalog model from its spec, this
loop takes a module as it is (a pruned catalog model, a Keras model on the PyTorch
backend, a student), keeps pruning masks applied after every step, and can add the
distillation loss of a teacher::

    loss = alpha * T² * KL(softmax(teacher / T) || softmax(student / T))
           + (1 - alpha) * task_loss(student, y)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from modelyard.compression.methods import FitOptions
from modelyard.compression.prune import apply_masks
from modelyard.errors import InvalidInput
from modelyard.runtimes.outputs import OutputKind, as_logits
from modelyard.training import Objective, epoch_order
from modelyard.training.config import PrivacyConfig
from modelyard.training.optim import build_optimizer
from modelyard.training.rng import isolated_rng, seed_everything


class FitStopped(Exception):
    """Raised when :meth:`FitHooks.should_stop` asked the loop to stop."""


class FitHooks(Protocol):
    """What the loop reports to, and asks whether to go on."""

    def on_epoch(self, event: dict[str, Any]) -> None: ...

    def should_stop(self) -> bool: ...


class NoHooks:
    """Hooks that report nowhere and never stop."""

    def on_epoch(self, event: dict[str, Any]) -> None:
        """Ignore the event."""

    def should_stop(self) -> bool:
        """Never stop."""
        return False


@dataclass(frozen=True)
class Teacher:
    """A frozen model whose softened outputs the student learns, and how much.

    ``outputs`` says what the model returns; probabilities are turned back into logits
    (their log) so that the soft targets are softened once, not softmaxed twice.
    """

    model: nn.Module
    temperature: float
    alpha: float
    outputs: OutputKind = "logits"

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The teacher's logits for ``inputs``, without gradients."""
        with torch.no_grad():
            raw = self.model(inputs)
        # The smallest positive float keeps tiny probabilities apart after the log; Keras's
        # clip at 1e-7 would flatten the soft targets at a high temperature.
        return as_logits(raw, self.outputs, floor=float(torch.finfo(raw.dtype).tiny))


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``T² · KL(softmax(teacher/T) || softmax(student/T))``, averaged over the batch."""
    soft_targets = F.softmax(teacher / temperature, dim=1)
    log_probs = F.log_softmax(student / temperature, dim=1)
    return F.kl_div(log_probs, soft_targets, reduction="batchmean") * temperature**2


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    options: FitOptions,
    objective: Objective,
    *,
    masks: Mapping[str, torch.Tensor] | None = None,
    teacher: Teacher | None = None,
    hooks: FitHooks | None = None,
    privacy: PrivacyConfig | None = None,
    spent: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` in place on prepared inputs ``x`` and encoded labels ``y``.

    Returns one ``{"epoch", "loss"}`` entry per epoch. Raises :class:`FitStopped` when the
    hooks ask to stop, and InvalidInput when the loss stops being finite. With ``privacy``
    it trains with DP-SGD (:mod:`modelyard.training.privacy`: Poisson batches, per-example
    clipping, noise) and puts the guarantee it spent into ``spent``.
    """
    if privacy is not None:
        if teacher is not None or masks:
            raise InvalidInput("privacy: only a plain fine-tune trains privately")
        return _fit_private(model, x, y, options, objective, privacy, hooks or NoHooks(), spent)
    hooks = hooks or NoHooks()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InvalidInput("the model has no trainable parameters")
    if teacher is not None and objective.task != "classification":
        raise InvalidInput("distillation needs a classification model (softmax outputs)")
    device = params[0].device
    rows = x.shape[0]
    batch = min(options.batch_size, rows)
    history: list[dict[str, Any]] = []
    with isolated_rng():
        seed_everything(options.seed)
        optimizer = build_optimizer(options.optimizer, params)
        if masks:
            apply_masks(model, masks)
        if teacher is not None:
            teacher.model.eval()
        for epoch in range(options.epochs):
            model.train()
            order = epoch_order(options.seed, epoch, rows)
            total = 0.0
            for start in range(0, rows, batch):
                if hooks.should_stop():
                    raise FitStopped
                index = order[start : start + batch]
                inputs, labels = x[index].to(device), y[index].to(device)
                outputs = model(inputs)
                loss = objective(outputs, labels)
                if teacher is not None:
                    soft = teacher.logits(inputs).to(outputs.dtype)
                    kd = distillation_loss(outputs, soft, teacher.temperature)
                    loss = teacher.alpha * kd + (1.0 - teacher.alpha) * loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                if masks:
                    apply_masks(model, masks)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise InvalidInput(
                        f"fit.optimizer.lr: the loss became {value} in epoch {epoch + 1}; "
                        "lower the learning rate"
                    )
                total += value * index.numel()
            entry = {"epoch": epoch + 1, "epochs": options.epochs, "loss": total / rows}
            history.append(entry)
            hooks.on_epoch({**entry, "progress": (epoch + 1) / options.epochs})
    model.eval()
    return history


def _fit_private(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    options: FitOptions,
    objective: Objective,
    privacy: PrivacyConfig,
    hooks: FitHooks,
    spent: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """:func:`fit` with DP-SGD: the version's recurrent layers trained as Opacus's."""
    # Opacus is loaded only by private training.
    from modelyard.training.privacy import PrivateTraining, plan_privacy, private_copy

    rows = x.shape[0]
    plan = plan_privacy(privacy, rows=rows, batch_size=options.batch_size, epochs=options.epochs)
    trained = private_copy(model)
    params = [p for p in trained.parameters() if p.requires_grad]
    if not params:
        raise InvalidInput("the model has no trainable parameters")
    device = params[0].device
    history: list[dict[str, Any]] = []
    with isolated_rng():
        seed_everything(options.seed)
        private = PrivateTraining(
            trained, build_optimizer(options.optimizer, params), plan, rows=rows
        )
        per_epoch = round(1 / plan.sample_rate)
        step = 0
        for epoch in range(options.epochs):
            trained.train()
            total, count = 0.0, 0
            for _ in range(per_epoch):
                if hooks.should_stop():
                    raise FitStopped
                index = private.batch(step)
                if index.numel():
                    inputs, labels = x[index].to(device), y[index].to(device)
                    loss = objective(trained(inputs), labels)
                    private.optimizer.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                    private.optimizer.step()
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise InvalidInput(
                            f"fit.optimizer.lr: the loss became {value} in epoch {epoch + 1}; "
                            "lower the learning rate"
                        )
                    total, count = total + value * index.numel(), count + index.numel()
                else:
                    private.empty_step()
                private.stepped()
                step += 1
            entry = {"epoch": epoch + 1, "epochs": options.epochs, "loss": total / max(count, 1)}
            history.append(entry)
            progress = (epoch + 1) / options.epochs
            hooks.on_epoch({**entry, "progress": progress, "privacy": private.spent()})
        summary = private.summary()
    state = private.close().state_dict()
    model.load_state_dict({name: state[name] for name in model.state_dict()})
    model.eval()
    if spent is not None:
        spent.update(summary)
    return history
