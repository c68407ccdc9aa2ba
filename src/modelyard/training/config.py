"""TrainConfig: everything about a training run except the architecture and the data.

>>> cfg = parse_config({"loss": "cross_entropy", "optimizer": {"name": "sgd", "lr": 0.1,
...                     "momentum": 0.9, "nesterov": True}, "epochs": 5})
>>> cfg.optimizer.nesterov
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from modelyard.errors import InvalidInput
from modelyard.nn.field_errors import invalid_input

LossName = Literal["mse", "l1", "cross_entropy", "bce"]
OptimizerName = Literal["gd", "sgd", "adam", "adamw", "rmsprop"]
ScheduleName = Literal["constant", "step", "cosine", "linear"]
MetricName = Literal["accuracy", "mse", "mae", "rmse", "r2"]
CLASSIFICATION_METRICS: frozenset[str] = frozenset({"accuracy"})
REGRESSION_METRICS: frozenset[str] = frozenset({"mse", "mae", "rmse", "r2"})
# Metrics where a larger value is better; early stopping's mode "auto" follows this.
HIGHER_IS_BETTER: frozenset[str] = frozenset({"accuracy", "r2"})

Positive = Annotated[int, Field(gt=0)]
NonNegative = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _named(value: Any) -> Any:
    """Let a section be given by its name alone: ``"adam"`` means ``{"name": "adam"}``."""
    return {"name": value} if isinstance(value, str) else value


class LossConfig(_Section):
    """The objective. ``bce`` is binary cross-entropy on logits (one output, or multi-label)."""

    name: LossName = Field(description="mse, l1, cross_entropy or bce.")
    label_smoothing: Fraction = Field(default=0.0, description="cross_entropy only.")

    @model_validator(mode="after")
    def _smoothing_for_cross_entropy(self) -> LossConfig:
        if self.label_smoothing and self.name != "cross_entropy":
            raise ValueError("label_smoothing: only cross_entropy uses it")
        return self


class OptimizerConfig(_Section):
    """The optimizer and its hyper-parameters; fields another optimizer uses must stay unset.

    Names are case-insensitive (``"Adam"`` is ``adam``); ``gd`` is full-batch gradient descent:
    plain SGD over the whole data set at every step.
    """

    name: OptimizerName = Field(default="adam")
    lr: float = Field(default=1e-3, gt=0.0, description="Peak learning rate.")
    momentum: Fraction = Field(default=0.0, description="sgd and rmsprop.")
    nesterov: bool = Field(default=False, description="sgd with momentum > 0.")
    weight_decay: float = Field(default=0.0, ge=0.0, description="L2 (adamw: decoupled).")
    betas: tuple[Fraction, Fraction] = Field(default=(0.9, 0.999), description="adam, adamw.")
    eps: float = Field(default=1e-8, gt=0.0, description="adam, adamw, rmsprop.")
    alpha: float = Field(default=0.99, gt=0.0, lt=1.0, description="rmsprop smoothing.")

    @field_validator("name", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _fields_fit_optimizer(self) -> OptimizerConfig:
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise ValueError("nesterov: needs optimizer sgd with momentum > 0")
        if self.momentum and self.name == "gd":
            raise ValueError("momentum: gd is plain gradient descent; use sgd for momentum")
        if self.momentum and self.name in ("adam", "adamw"):
            raise ValueError(f"momentum: {self.name} does not use it; set betas instead")
        return self


class ScheduleConfig(_Section):
    """Learning-rate schedule, applied per optimizer step; ``warmup_steps`` combines with any.

    ``step`` multiplies the rate by ``gamma`` every ``step_size`` epochs; ``cosine`` and
    ``linear`` decay from ``lr`` to ``min_lr`` over the steps after the warm-up.
    """

    name: ScheduleName = Field(default="constant")
    step_size: Positive = Field(default=10, description="step: epochs between decays.")
    gamma: float = Field(default=0.1, gt=0.0, le=1.0, description="step: decay factor.")
    warmup_steps: NonNegative = Field(default=0, description="Linear warm-up from 0 to lr.")
    min_lr: float = Field(default=0.0, ge=0.0, description="cosine, linear: final rate.")


class ValidationConfig(_Section):
    """Hold out part of the training data when no validation set is given."""

    fraction: Fraction = Field(default=0.0, description="Share of rows held out; 0: none.")
    seed: NonNegative | None = Field(default=None, description="Seed of the split; default seed.")


class EarlyStoppingConfig(_Section):
    """Stop when ``metric`` has not improved by ``min_delta`` for ``patience`` epochs."""

    patience: Positive = Field(default=5, description="Epochs without improvement allowed.")
    metric: str = Field(default="val_loss", description="train_<m> or val_<m>, e.g. val_loss.")
    mode: Literal["min", "max", "auto"] = Field(
        default="auto", description="auto: max for accuracy and r2, min otherwise."
    )
    min_delta: float = Field(default=0.0, ge=0.0, description="Smallest change that counts.")
    restore_best: bool = Field(default=True, description="End with the best epoch's weights.")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if not re.fullmatch(r"(train|val)_(loss|accuracy|mse|mae|rmse|r2)", value):
            raise ValueError("must be train_<metric> or val_<metric>, such as val_loss")
        return value

    @property
    def split(self) -> str:
        """``train`` or ``val``."""
        return self.metric.split("_", 1)[0]

    @property
    def metric_name(self) -> str:
        """The metric without its split, such as ``loss``."""
        return self.metric.split("_", 1)[1]

    @property
    def maximize(self) -> bool:
        """Whether a larger value is an improvement."""
        if self.mode == "auto":
            return self.metric_name in HIGHER_IS_BETTER
        return self.mode == "max"


class PreprocessingConfig(_Section):
    """Transforms fitted on the training split and recorded for serving."""

    scale: float | None = Field(default=None, gt=0.0, description="Multiply inputs (1/255).")
    standardize: bool = Field(default=False, description="Subtract mean, divide by std.")
    one_hot: bool | None = Field(
        default=None, description="One-hot class labels; default: when the loss needs it."
    )
    standardize_target: bool | None = Field(
        default=None,
        description="Regression: train on standardized targets (folded back into the head "
        "afterwards); default on for regression.",
    )


AccountantName = Literal["prv", "rdp"]


class PrivacyConfig(_Section):
    """Differentially private training: DP-SGD (Opacus) with a privacy accountant.

    Each example's gradient is clipped to ``max_grad_norm``, Gaussian noise of standard
    deviation ``noise_multiplier * max_grad_norm`` is added to their sum, and every step
    samples its batch by Poisson sampling (each row with probability batch_size / rows).
    Give ``target_epsilon`` (the noise is chosen so that the whole run spends at most that)
    or ``noise_multiplier`` (the run spends what it spends). ε is accounted by ``accountant``
    (``prv``: Gopi et al.'s privacy random variables; ``rdp``: Rényi DP, looser).
    """

    target_epsilon: float | None = Field(
        default=None, gt=0.0, le=1000.0, description="ε the whole run may spend."
    )
    noise_multiplier: float | None = Field(
        default=None,
        gt=0.0,
        le=1000.0,
        description="Instead of target_epsilon: the noise's standard deviation over the "
        "clipping norm.",
    )
    target_delta: float = Field(
        gt=0.0, lt=1.0, description="δ of the (ε, δ) guarantee; below 1/rows of the data set."
    )
    max_grad_norm: float = Field(
        default=1.0, gt=0.0, le=1e6, description="Each example's gradient is clipped to this."
    )
    accountant: AccountantName = Field(default="prv", description="prv (default) or rdp.")

    @model_validator(mode="after")
    def _epsilon_or_noise(self) -> PrivacyConfig:
        if (self.target_epsilon is None) == (self.noise_multiplier is None):
            raise ValueError("give target_epsilon or noise_multiplier (one of them)")
        return self


class TrainConfig(_Section):
    """A training run's settings; parse JSON with :func:`parse_config`."""

    loss: (
        Annotated[LossConfig, BeforeValidator(_named, json_schema_input_type=LossConfig | LossName)]
        | None
    ) = Field(default=None, description="Default: cross_entropy (bce for one output) or mse.")
    optimizer: Annotated[
        OptimizerConfig,
        BeforeValidator(_named, json_schema_input_type=OptimizerConfig | OptimizerName),
    ] = Field(
        default_factory=OptimizerConfig,
        description="An object, or a name alone (any case): gd, sgd, adam, adamw, rmsprop.",
    )
    schedule: Annotated[
        ScheduleConfig,
        BeforeValidator(_named, json_schema_input_type=ScheduleConfig | ScheduleName),
    ] = Field(default_factory=ScheduleConfig)
    epochs: Positive = Field(default=10)
    batch_size: Positive | None = Field(
        default=32, description="Rows per step; null (or >= the row count): full batch."
    )
    seed: NonNegative = Field(default=0, description="Seeds weights, data order and dropout.")
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    early_stopping: EarlyStoppingConfig | None = Field(default=None)
    metrics: list[MetricName] | None = Field(
        default=None, description="Default: accuracy, or mse, mae and r2 for regression."
    )
    device: str = Field(default="auto", description="auto: CUDA when available, else CPU.")
    preprocessing: PreprocessingConfig = Field(default_factory=PreprocessingConfig)
    freeze: list[str] = Field(
        default_factory=list, description="Parameter name prefixes kept fixed (fine-tuning)."
    )
    replace_head: bool = Field(
        default=False, description="Fine-tuning: keep the initial weights but a new head."
    )
    checkpoint_every_steps: NonNegative = Field(default=0, description="0: every epoch.")
    log_every_steps: Positive = Field(default=10, description="Steps between step events.")
    grad_clip_norm: float | None = Field(default=None, gt=0.0)
    eval_batch_size: Positive = Field(default=1024, description="Rows per evaluation batch.")
    privacy: PrivacyConfig | None = Field(
        default=None,
        description="Differentially private training (DP-SGD): per-example clipping, noise, "
        "Poisson sampling and an accountant of the ε spent.",
    )

    @model_validator(mode="before")
    @classmethod
    def _gd_is_full_batch(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        optimizer = _named(data.get("optimizer"))
        name = optimizer.get("name") if isinstance(optimizer, Mapping) else None
        if not (isinstance(name, str) and name.strip().lower() == "gd"):
            return data
        if data.get("batch_size") is not None:
            raise ValueError(
                "batch_size: optimizer gd takes the whole data set at every step; drop "
                "batch_size, or use sgd for mini-batches"
            )
        return {**data, "batch_size": None}

    @model_validator(mode="before")
    @classmethod
    def _private_targets_unscaled(cls, data: Any) -> Any:
        # Standardized targets are scaled by the rows' mean and deviation, which no noise
        # protects: a private run trains on the targets as they are.
        if not isinstance(data, Mapping) or data.get("privacy") is None:
            return data
        pre = data.get("preprocessing")
        if pre is None:
            return {**data, "preprocessing": {"standardize_target": False}}
        if isinstance(pre, Mapping) and pre.get("standardize_target") is None:
            return {**data, "preprocessing": {**pre, "standardize_target": False}}
        return data

    @model_validator(mode="after")
    def _privacy_fits(self) -> TrainConfig:
        if self.privacy is None:
            return self
        if self.grad_clip_norm is not None:
            raise ValueError(
                "grad_clip_norm: private training clips each example's gradient "
                "(privacy.max_grad_norm); leave grad_clip_norm out"
            )
        for name in ("standardize", "standardize_target"):
            if getattr(self.preprocessing, name):
                raise ValueError(
                    f"preprocessing.{name}: it is fitted on the rows' mean and deviation, "
                    "which no noise protects; a private run takes preprocessing.scale (or "
                    "data already scaled)"
                )
        return self

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", value):
            raise ValueError("must be auto, cpu, cuda, cuda:<index> or mps")
        return value

    @field_validator("freeze")
    @classmethod
    def _prefixes_not_empty(cls, value: list[str]) -> list[str]:
        if any(not prefix.strip() for prefix in value):
            raise ValueError("prefixes must not be empty")
        return value


def parse_config(raw: Mapping[str, Any] | TrainConfig, *, where: str = "config") -> TrainConfig:
    """Validate a JSON config; errors raise InvalidInput naming the field."""
    if isinstance(raw, TrainConfig):
        return raw
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where}: must be a JSON object", errors=[])
    try:
        return TrainConfig.model_validate(dict(raw))
    except ValidationError as exc:
        raise invalid_input(exc, where) from None
