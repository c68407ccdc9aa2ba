"""What a compression job may be asked to do: one pydantic model per method.

A job's ``method`` is one of these, chosen by ``name``::

    {"name": "quantize"}                      # dynamic_int8 on ONNX Runtime
    {"name": "quantize", "scheme": "weight_int4", "backend": "torchao"}
    {"name": "quantize", "scheme": "static_int8", "calibration_dataset": "digits-train"}
    {"name": "prune", "kind": "unstructured", "sparsity": 0.8,
     "fine_tune": {"dataset": "digits-train", "epochs": 3}}
    {"name": "prune", "kind": "structured", "amount": 0.5}
    {"name": "cast", "dtype": "float16"}
    {"name": "export", "format": "onnx"}

Errors raise :class:`~modelyard.errors.InvalidInput` naming the field (``method.sparsity``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from modelyard.errors import InvalidInput
from modelyard.nn.field_errors import invalid_input
from modelyard.training.config import OptimizerConfig, PrivacyConfig

Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FitOptions(_Strict):
    """Training on a data set after (or instead of) compressing: fine-tuning, distillation."""

    dataset: str = Field(description="The data set to train on (labels as in the job).")
    epochs: Annotated[int, Field(gt=0, le=1000)] = 3
    batch_size: Annotated[int, Field(gt=0)] = 64
    optimizer: OptimizerConfig = Field(
        default_factory=lambda: OptimizerConfig(name="adam", lr=1e-3)
    )
    seed: Annotated[int, Field(ge=0)] = 0

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer_by_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class QuantizeMethod(_Strict):
    """Int8 (or int4) weights.

    - ``dynamic_int8`` (the default): int8 weights and activations quantized at run time.
      With ``backend: auto`` ONNX Runtime's dynamic quantizer makes an ONNX version whose
      matrix products (``Linear`` layers, LSTMs, attention) run on its int8 CPU kernels;
      convolutions stay float, which ONNX Runtime runs faster than its ``ConvInteger``
      (``static_int8`` quantizes them). ``backend: torchao`` keeps a catalog version
      with torchao's per-token kernels, which pay off under ``torch.compile`` or on a GPU
      but are slower than float in eager mode on a CPU.
    - ``weight_int8`` / ``weight_int4``: weight-only, per channel (int8) or per group of
      ``group_size`` input features (int4), for ``Linear`` layers (torchao).
    - ``static_int8``: int8 weights and activations with scales calibrated on
      ``calibration_dataset`` (ONNX Runtime, QDQ format); the version produced is ONNX.
    """

    name: Literal["quantize"] = "quantize"
    scheme: Literal["dynamic_int8", "weight_int8", "weight_int4", "static_int8"] = "dynamic_int8"
    modules: list[str] | None = Field(
        default=None,
        description="Module names to quantize (torchao); default every one that can be.",
    )
    backend: Literal["auto", "torchao", "onnxruntime"] = Field(
        default="auto",
        description=(
            "auto: ONNX Runtime for dynamic_int8 and static_int8 (fast int8 kernels on a "
            "CPU) unless modules are named, torchao for the weight-only schemes."
        ),
    )
    group_size: Literal[32, 64, 128, 256] = Field(default=32, description="weight_int4 only.")
    calibration_dataset: str | None = Field(default=None, description="static_int8 only.")
    calibration_rows: Annotated[int, Field(gt=0, le=100_000)] = 512

    @model_validator(mode="after")
    def _calibration_for_static(self) -> QuantizeMethod:
        if self.scheme == "static_int8" and self.calibration_dataset is None:
            raise ValueError("calibration_dataset: static_int8 calibrates on a data set")
        if self.scheme != "static_int8" and self.calibration_dataset is not None:
            raise ValueError("calibration_dataset: only static_int8 is calibrated")
        if self.scheme == "static_int8" and self.backend == "torchao":
            raise ValueError(
                "backend: static_int8 runs on ONNX Runtime (torchao's static int8 covers "
                "Linear layers only, not the convolutions static quantization is for)"
            )
        if self.scheme in ("weight_int8", "weight_int4") and self.backend == "onnxruntime":
            raise ValueError(f"backend: {self.scheme} is a torchao scheme")
        return self


class PruneMethod(_Strict):
    """Magnitude pruning.

    - ``unstructured``: zero the ``sparsity`` share of weights with the smallest magnitude,
      over all chosen layers together (``scope: global``) or in each (``layer``); the
      zeros are kept during fine-tuning.
    - ``structured``: remove ``amount`` of the hidden units / convolution channels with the
      smallest L1 norm from each chosen layer; the result is a smaller catalog model.
    """

    name: Literal["prune"] = "prune"
    kind: Literal["unstructured", "structured"]
    sparsity: Fraction | None = Field(default=None, description="unstructured only.")
    amount: Fraction | None = Field(default=None, description="structured only.")
    scope: Literal["global", "layer"] = Field(default="global", description="unstructured.")
    modules: list[str] | None = Field(default=None, description="Default: every layer it can.")
    fine_tune: FitOptions | None = None

    @model_validator(mode="after")
    def _target_for_kind(self) -> PruneMethod:
        if self.kind == "unstructured":
            if self.sparsity is None:
                raise ValueError("sparsity: unstructured pruning needs a target sparsity")
            if self.amount is not None:
                raise ValueError("amount: structured pruning only; give sparsity")
        else:
            if self.amount is None:
                raise ValueError("amount: structured pruning needs the share to remove")
            if self.sparsity is not None:
                raise ValueError("sparsity: unstructured pruning only; give amount")
        return self


class CastMethod(_Strict):
    """Weights in half precision; inputs are cast on the way in, outputs back to float32."""

    name: Literal["cast"] = "cast"
    dtype: Literal["float16", "bfloat16"]


class ExportMethod(_Strict):
    """A portable program, checked ``allclose`` against its source on the eval data."""

    name: Literal["export"] = "export"
    format: Literal["onnx", "torchscript", "torch_export"]
    opset: Annotated[int, Field(ge=18, le=23)] = 18
    atol: Annotated[float, Field(gt=0.0)] = 1e-4
    rtol: Annotated[float, Field(ge=0.0)] = 1e-4


class FineTuneMethod(_Strict):
    """Train a version further as it is (catalog or Keras), its architecture unchanged."""

    name: Literal["finetune"] = "finetune"
    fit: FitOptions
    privacy: PrivacyConfig | None = Field(
        default=None, description="Train with differential privacy (DP-SGD), as train jobs do."
    )


Method: TypeAlias = Annotated[
    QuantizeMethod | PruneMethod | CastMethod | ExportMethod | FineTuneMethod,
    Field(discriminator="name"),
]
METHOD_NAMES = ("quantize", "prune", "cast", "export", "finetune")


class DistillOptions(_Strict):
    """Train a student on a teacher's softened outputs and the labels.

    The loss is ``alpha * T² * KL(teacher_T || student_T) + (1 - alpha) * CE(student, y)``
    with both sides' logits divided by the ``temperature`` T.
    """

    temperature: Annotated[float, Field(gt=0.0, le=100.0)] = 4.0
    alpha: Annotated[float, Field(ge=0.0, le=1.0)] = 0.7
    fit: FitOptions


class Gate(_Strict):
    """When a child is not good enough to register."""

    max_metric_drop: Annotated[float, Field(ge=0.0)] | None = Field(
        default=None,
        description="Largest allowed fall of the metric (accuracy or r2), parent - child.",
    )


def parse_method(raw: Any, *, where: str = "method") -> Method:
    """A method from its JSON; InvalidInput names the field at fault."""
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where}: must be an object such as {{'name': 'quantize', ...}}")
    name = raw.get("name")
    if name not in METHOD_NAMES:
        raise InvalidInput(f"{where}.name: must be one of {', '.join(METHOD_NAMES)}")
    try:
        return _method_adapter().validate_python(dict(raw))
    except ValidationError as exc:
        raise invalid_input(exc, where, skip=1) from None


def parse_model(model: type[_Strict], raw: Any, where: str) -> Any:
    """``model`` validated from ``raw``; InvalidInput names the field under ``where``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where}: must be an object")
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise invalid_input(exc, where) from None


@functools.cache
def _method_adapter() -> TypeAdapter[Method]:
    return TypeAdapter(Method)
