"""What a deployment is: validated JSON stored with it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from modelyard.errors import InvalidInput
from modelyard.runtimes.loader import LOADERS
from modelyard.serving import defaults

RuntimeName = Literal["auto", "torch", "onnxruntime", "torchscript", "torch_export", "keras"]
"""``auto``, or an engine one of the servable formats runs on (see ``runtimes.LOADERS``)."""

# Language models (Hugging Face folders) run on their own engine; only ``auto`` chooses it.
_ENGINES_OF_FORMAT_WITHOUT_LOADER: dict[str, tuple[str, ...]] = {"hf": ()}

# A version is a number or an alias; numbers may come as JSON numbers.
VersionRef = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)]


class TrafficEntry(BaseModel):
    """A share of the requests for one version (canary releases)."""

    model_config = ConfigDict(extra="forbid")

    version: VersionRef = Field(description="Version number or alias of the deployment's model.")
    weight: float = Field(gt=0, description="Relative share of requests.")


class Postprocess(BaseModel):
    model_config = ConfigDict(extra="forbid")

    softmax: bool = Field(default=False, description="Add class probabilities.")
    top_k: int | None = Field(default=None, ge=1, le=1000, description="Add the k best labels.")


class DeploymentSpec(BaseModel):
    """How a deployment serves: which versions, on what, and how requests are batched."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, description="Registered model to serve.")
    version: VersionRef = Field(default="latest", description="Version number or alias to follow.")
    traffic: list[TrafficEntry] | None = Field(
        default=None, description="Split requests between versions by weight (canary)."
    )
    pipeline: list[str] | None = Field(
        default=None, description="Chain other deployments: each one's output feeds the next."
    )
    base: str | None = Field(
        default=None,
        description="For a LoRA adapter version (format lora): the deployment serving the "
        "base model version it was trained on. The adapter runs on that deployment's loaded "
        "model, in its batches, without a copy of the weights.",
    )
    runtime: RuntimeName = Field(
        default="auto",
        description="auto, or an engine the version's format runs on: torch or onnxruntime "
        "(safetensors), torchscript, torch_export, onnxruntime (onnx), keras.",
    )
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    replicas: int = Field(
        default=defaults.REPLICAS, ge=1, le=16, description="Batches computed at once."
    )
    max_batch_size: int = Field(default=defaults.MAX_BATCH_SIZE, ge=1, le=4096)
    max_batch_delay_ms: float = Field(default=defaults.MAX_BATCH_DELAY_MS, ge=0, le=10_000)
    max_queue: int = Field(default=defaults.MAX_QUEUE, ge=1, le=1_000_000)
    timeout_ms: float = Field(default=defaults.TIMEOUT_MS, gt=0, le=600_000)
    postprocess: Postprocess = Field(default_factory=Postprocess)
    accepted: dict[str, int] = Field(
        default_factory=dict,
        description="Versions taken in by force although their tensors differ from what was "
        "served, by the reference that named them ({'production': 3}); every server swaps to "
        "them. Set by forced swaps.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> DeploymentSpec:
        if (self.model is None) == (self.pipeline is None):
            raise ValueError("give either 'model' or 'pipeline'")
        if self.pipeline is not None and len(self.pipeline) < 2:
            raise ValueError("pipeline: chain at least two deployments")
        if self.traffic is not None and self.model is None:
            raise ValueError("traffic: needs 'model'")
        if self.base is not None and (self.model is None or self.traffic is not None):
            raise ValueError("base: an adapter deployment serves one version of 'model'")
        return self

    def versions_wanted(self) -> list[str]:
        """The version references this deployment serves (one, or the traffic split's)."""
        if self.traffic:
            return [entry.version for entry in self.traffic]
        return [self.version] if self.model else []


def runtimes_for(fmt: str) -> tuple[str, ...]:
    """The engines a version of format ``fmt`` may be asked to run on (``auto`` aside)."""
    loader = LOADERS.get(fmt)
    if loader is not None:
        return loader.runtimes
    return _ENGINES_OF_FORMAT_WITHOUT_LOADER.get(fmt, ())


def check_runtime(runtime: str, fmt: str, what: str) -> None:
    """InvalidInput (naming the runtime and the format) unless ``runtime`` can run ``what``,
    a version of format ``fmt``."""
    choices = runtimes_for(fmt)
    if runtime == "auto" or runtime in choices:
        return
    raise InvalidInput(
        f"runtime: '{runtime}' cannot run {what}, a {fmt} version; choose "
        + ", ".join(("auto", *choices)),
        field="runtime",
    )


def parse_deployment_spec(raw: dict[str, Any]) -> DeploymentSpec:
    """Validate a deployment spec; errors name the field."""
    try:
        return DeploymentSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "deployment"
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'deployment'}: {e['msg']}"
            for e in exc.errors()
        )
        raise InvalidInput(detail, field=where) from None
