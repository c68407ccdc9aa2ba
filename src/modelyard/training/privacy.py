"""Differentially private training (DP-SGD) with Opacus: the glue between it and the loop.

A private run (``config.privacy``) differs from a plain one in four ways, all here:

- its batches are drawn by **Poisson sampling**: at every step each training row is in the
  batch with probability ``q = 1 / steps_per_epoch`` (about ``batch_size / rows``), so a
  batch's size varies; an epoch is ``steps_per_epoch`` such steps;
- each example's gradient is computed (Opacus's :class:`~opacus.GradSampleModule`) and
  **clipped** to ``max_grad_norm``, and Gaussian **noise** of standard deviation
  ``noise_multiplier * max_grad_norm`` is added to their sum (Opacus's
  :class:`~opacus.optimizers.DPOptimizer`; in data-parallel runs its distributed variant,
  which adds the noise once, on rank 0);
- an **accountant** (PRV or RDP) records every step and says the ε spent so far for the
  run's δ; given ``target_epsilon`` the noise is chosen (:func:`plan_privacy`) so the whole
  run spends at most that;
- the sampling and the noise come from a **secret seed** drawn from the operating system
  when the run starts, never from ``config.seed``, which is recorded on the version: noise
  that could be regenerated could be subtracted. The seed, the noise generator's state and
  the accountant's history (a JSON list) are kept in the run's checkpoint, so a resumed run
  draws what an uninterrupted one would have and ends with the same ε.

Layers Opacus cannot compute per-example gradients for (batch normalisation, PyTorch's
multi-head attention, …) are refused by name (:func:`check_private_layers`); the catalog's
recurrent layers are built from Opacus's DP variants
(:func:`modelyard.nn.catalog.build_model` with ``private=True``).
"""

from __future__ import annotations

import functools
import math
import secrets
import time
import warnings
from collections.abc import Mapping, Sequence
from copy import deepcopy
from dataclasses import asdict, dataclass
from typing import Any

import torch
from opacus import GradSampleModule
from opacus.accountants import create_accountant
from opacus.accountants.utils import get_noise_multiplier
from opacus.optimizers import DistributedDPOptimizer, DPOptimizer
from opacus.utils.module_utils import trainable_modules
from opacus.validators import ModuleValidator
from torch import nn

from modelyard.errors import InvalidInput
from modelyard.nn.catalog import ArchSpec, build_model
from modelyard.training.config import PrivacyConfig

warnings.filterwarnings(
    "ignore", message="Full backward hook is firing when gradients are computed with respect"
)
# At most one ε computation (a PRV one takes 0.1-2 s) per this many seconds while training;
# events in between report the last one, with the step it was computed at.
EPSILON_INTERVAL_S = 2.0


def steps_per_epoch(rows: int, batch_size: int | None) -> int:
    """Steps of one epoch: ``ceil(rows / batch_size)`` (one step for a full batch)."""
    batch = min(batch_size or rows, rows)
    return math.ceil(rows / batch)


def fresh_secret() -> int:
    """A seed nobody can know: the operating system's randomness."""
    return secrets.randbits(62)


@dataclass(frozen=True)
class PrivacyPlan:
    """What a private run will do and spend, known before it starts."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    epsilon: float
    """ε after all ``steps`` (an early stop spends less)."""
    delta: float
    max_grad_norm: float
    accountant: str
    target_epsilon: float | None

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON."""
        return asdict(self)


def epsilon_of(history: Sequence[Sequence[float]], delta: float, accountant: str) -> float:
    """ε spent by the steps of ``history`` (``[noise_multiplier, sample_rate, steps]``
    entries, as Opacus's accountants keep them) at ``delta``."""
    if not history:
        return 0.0
    counter = create_accountant(mechanism=accountant)
    counter.history = [(float(s), float(q), int(n)) for s, q, n in history]
    with warnings.catch_warnings():
        # RDP warns when the best order is the largest it tries; the bound still holds.
        warnings.simplefilter("ignore")
        return float(counter.get_epsilon(delta=delta))


@functools.lru_cache(maxsize=64)
def noise_for(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str
) -> float:
    """The smallest noise multiplier (within Opacus's tolerance of 0.01 in ε) whose run of
    ``steps`` steps at ``sample_rate`` spends at most ``target_epsilon``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(
                get_noise_multiplier(
                    target_epsilon=target_epsilon,
                    target_delta=delta,
                    sample_rate=sample_rate,
                    steps=steps,
                    accountant=accountant,
                    epsilon_tolerance=0.01,
                )
            )
    except ValueError as exc:
        raise InvalidInput(
            f"privacy.target_epsilon: ε={target_epsilon} cannot be reached in {steps} steps "
            f"at sample rate {sample_rate:.4g} ({exc}); raise it, or train fewer epochs or "
            "with smaller batches",
            field="privacy.target_epsilon",
        ) from None


def plan_privacy(
    privacy: PrivacyConfig, *, rows: int, batch_size: int | None, epochs: int
) -> PrivacyPlan:
    """The noise, sampling rate, steps and ε of a private run over ``rows`` training rows.

    InvalidInput when δ is not below 1/rows (a δ that large allows releasing a whole row),
    or when ``target_epsilon`` cannot be reached.
    """
    if rows < 1:
        raise InvalidInput("privacy: there are no training rows")
    if privacy.target_delta >= 1.0 / rows:
        raise InvalidInput(
            f"privacy.target_delta: must be below 1/rows = {1.0 / rows:.3g} (the training "
            f"split has {rows} rows); 1e-5 or less is usual",
            field="privacy.target_delta",
        )
    per_epoch = steps_per_epoch(rows, batch_size)
    rate = 1.0 / per_epoch
    steps = epochs * per_epoch
    if privacy.noise_multiplier is not None:
        noise = privacy.noise_multiplier
    else:
        assert privacy.target_epsilon is not None
        noise = noise_for(
            privacy.target_epsilon, privacy.target_delta, rate, steps, privacy.accountant
        )
    return PrivacyPlan(
        noise_multiplier=noise,
        sample_rate=rate,
        steps=steps,
        epsilon=epsilon_of([(noise, rate, steps)], privacy.target_delta, privacy.accountant),
        delta=privacy.target_delta,
        max_grad_norm=privacy.max_grad_norm,
        accountant=privacy.accountant,
        target_epsilon=privacy.target_epsilon,
    )


def private_layer_problems(model: nn.Module) -> list[str]:
    """``"<layer> (<type>): <why>"`` for each trainable layer Opacus cannot train privately:
    those its :class:`~opacus.validators.ModuleValidator` refuses (batch norm, PyTorch's
    LSTM, GRU and multi-head attention, …) and those with buffers, whose per-example
    gradients are not defined."""
    problems: list[str] = []
    for name, module in trainable_modules(model):
        where = f"'{name}' ({type(module).__name__})" if name else type(module).__name__
        validator = ModuleValidator.VALIDATORS.get(type(module))
        if validator is not None:
            for error in validator(module):
                problems.append(f"{where}: {_first_sentence(str(error))}")
        elif any(True for _ in module.buffers(recurse=False)):
            problems.append(f"{where}: has buffers (running statistics), which mix examples")
    return problems


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    end = text.find(". ")
    return text[: end + 1] if end > 0 else text


def check_private_layers(model: nn.Module) -> None:
    """InvalidInput naming each layer of ``model`` that cannot be trained privately."""
    problems = private_layer_problems(model)
    if problems:
        raise InvalidInput(
            "privacy: these layers cannot be trained with differential privacy: "
            + "; ".join(problems),
            field="privacy",
        )


def check_private_spec(spec: ArchSpec) -> None:
    """:func:`check_private_layers` for the private build of a catalog spec (no weights are
    made: the model is built on the meta device)."""
    with torch.device("meta"):
        model = build_model(spec, private=True)
    check_private_layers(model)


def plain_model(model: nn.Module, spec: ArchSpec) -> nn.Module:
    """The catalog's own model for ``spec`` with the weights of its private build."""
    plain = build_model(spec)
    device = next(iter(model.parameters()), torch.empty(0)).device
    # Opacus's layers list their weights under PyTorch's names and their own; the former.
    state = model.state_dict()
    plain.load_state_dict({name: state[name] for name in plain.state_dict()})
    return plain.to(device)


def private_copy(model: nn.Module) -> nn.Module:
    """A copy of any ``model`` whose LSTM and GRU layers are Opacus's (same weights and
    names), for private fine-tuning of a version as it is; its weights load back into
    ``model``."""
    fixers = {t: f for t, f in ModuleValidator.FIXERS.items() if t in (nn.LSTM, nn.GRU)}
    fixers[nn.RNN] = _dp_rnn
    copy: nn.Module = deepcopy(model)
    for name, module in list(copy.named_modules()):
        fixer = fixers.get(type(module))
        if fixer is None or not name:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = copy.get_submodule(parent_name) if parent_name else copy
        setattr(parent, child, fixer(module).to(next(module.parameters()).device))
    return copy


def _dp_rnn(module: nn.RNN) -> nn.Module:
    from opacus.layers import DPRNN

    layer: nn.Module = DPRNN(
        module.input_size,
        module.hidden_size,
        num_layers=module.num_layers,
        bias=module.bias,
        batch_first=module.batch_first,
        dropout=module.dropout,
        bidirectional=module.bidirectional,
        nonlinearity=module.nonlinearity,
    )
    layer.load_state_dict(module.state_dict())
    return layer


def poisson_batch(generator: torch.Generator, rows: int, rate: float) -> torch.Tensor:
    """Rows ``0 … rows-1`` each taken independently with probability ``rate``, in order.

    Drawn as the gaps between taken rows (geometric), so a step costs what its batch
    does rather than ``rows`` random numbers.
    """
    if rate >= 1.0:
        return torch.arange(rows)
    log_keep = math.log1p(-rate)
    chunk = max(16, int(rows * rate + 6 * math.sqrt(rows * rate) + 16))
    taken: list[torch.Tensor] = []
    last = -1
    while True:
        uniform = 1.0 - torch.rand(chunk, generator=generator, dtype=torch.float64)  # (0, 1]
        gaps = torch.floor(torch.log(uniform) / log_keep).to(torch.long) + 1
        positions = last + torch.cumsum(gaps, 0)
        inside = positions[positions < rows]
        taken.append(inside)
        if len(inside) < len(positions):
            return torch.cat(taken)
        last = int(positions[-1])


class PrivateTraining:
    """One private run's per-example gradients, noisy optimizer, sampler and accountant.

    The loop forwards through :attr:`module`, steps :attr:`optimizer`, takes its batches
    from :meth:`batch` and calls :meth:`stepped` after each step.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        plan: PrivacyPlan,
        *,
        rows: int,
        world: int = 1,
        rank: int = 0,
        secret: int | None = None,
    ) -> None:
        check_private_layers(model)
        self.plan = plan
        self.rows = rows
        self.world, self.rank = world, rank
        self.secret = fresh_secret() if secret is None else secret
        device = next(iter(model.parameters())).device
        self.noise = torch.Generator(device=device).manual_seed(self.secret)
        self.module = GradSampleModule(model, batch_first=True, loss_reduction="mean")
        dp_optimizer = DistributedDPOptimizer if world > 1 else DPOptimizer
        self.optimizer = dp_optimizer(
            optimizer,
            noise_multiplier=plan.noise_multiplier,
            max_grad_norm=plan.max_grad_norm,
            # Per rank: the distributed optimizer averages the ranks' gradients.
            expected_batch_size=rows * plan.sample_rate / world,
            loss_reduction="mean",
            generator=self.noise,
        )
        self.accountant = create_accountant(mechanism=plan.accountant)
        self._spent: dict[str, Any] = {"epsilon": 0.0, "delta": plan.delta, "step": 0}
        self._spent_at = -math.inf

    @property
    def steps(self) -> int:
        """Steps accounted so far."""
        return sum(int(n) for _, _, n in self.accountant.history)

    def batch(self, step: int) -> torch.Tensor:
        """This rank's rows of global step ``step``: a Poisson sample of all rows (the same
        on every rank), split between the ranks."""
        generator = torch.Generator().manual_seed((self.secret + 0x9E3779B97F4A7C15 * step) % 2**63)
        rows = poisson_batch(generator, self.rows, self.plan.sample_rate)
        return rows[self.rank :: self.world] if self.world > 1 else rows

    def empty_step(self) -> None:
        """A step whose batch (on this rank) is empty: noise only, as Opacus does it."""
        for param in self.optimizer.params:
            param.grad_sample = param.new_zeros((0, *param.shape))
        self.optimizer.step()

    def stepped(self) -> None:
        """Account for one step."""
        self.accountant.step(
            noise_multiplier=self.plan.noise_multiplier, sample_rate=self.plan.sample_rate
        )

    def spent(self, *, fresh: bool = False) -> dict[str, Any]:
        """``{"epsilon", "delta", "step"}``: ε spent by the first ``step`` steps; computed
        again only when ``fresh`` or every :data:`EPSILON_INTERVAL_S` seconds."""
        now = time.monotonic()
        steps = self.steps
        if steps != self._spent["step"] and (fresh or now - self._spent_at >= EPSILON_INTERVAL_S):
            epsilon = epsilon_of(self.accountant.history, self.plan.delta, self.plan.accountant)
            self._spent = {"epsilon": epsilon, "delta": self.plan.delta, "step": steps}
            self._spent_at = time.monotonic()
        return dict(self._spent)

    def summary(self) -> dict[str, Any]:
        """What the version records: the (ε, δ) spent and how."""
        spent = self.spent(fresh=True)
        return {
            "epsilon": spent["epsilon"],
            "delta": self.plan.delta,
            "noise_multiplier": self.plan.noise_multiplier,
            "max_grad_norm": self.plan.max_grad_norm,
            "accountant": self.plan.accountant,
            "sample_rate": self.plan.sample_rate,
            "steps": spent["step"],
            "target_epsilon": self.plan.target_epsilon,
            "sampling": "poisson",
            "clipping": "per_example",
        }

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's part: the secret seed, the noise generator and the accountant's
        history (plain numbers and one tensor: no pickle)."""
        return {
            "secret": self.secret,
            "noise": self.noise.get_state(),
            "accountant": self.plan.accountant,
            "noise_multiplier": self.plan.noise_multiplier,
            "sample_rate": self.plan.sample_rate,
            "history": [[float(s), float(q), int(n)] for s, q, n in self.accountant.history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`: its secret, noise and accountant."""
        same = (
            state.get("accountant") == self.plan.accountant
            and state.get("noise_multiplier") == self.plan.noise_multiplier
            and state.get("sample_rate") == self.plan.sample_rate
        )
        if not same:
            raise InvalidInput("resume: the checkpoint was written with different privacy")
        self.secret = int(state["secret"])
        self.noise.set_state(state["noise"])
        self.accountant.history = [(float(s), float(q), int(n)) for s, q, n in state["history"]]

    def close(self) -> nn.Module:
        """The trained module without Opacus's hooks and per-example gradients."""
        module: nn.Module = self.module.to_standard_module()
        return module
