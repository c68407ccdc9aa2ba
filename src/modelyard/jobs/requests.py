"""What ``POST /api/v1/jobs`` takes: one pydantic model per kind of job, told apart by ``type``.

:data:`JobRequest` is the union the API documents (``/openapi.json`` shows every field of every
kind, with its enum values) and the job service checks a request against before planning it,
so every field is checked the same way and an unknown one is refused with a 422 naming it.

The flat form of the seeds (``{"model_name": "mlp", "data": "iris", "optimizer": "Adam",
"learning_rate": 0.001, "epochs": 50}``, no ``type``) is a train request too
(:class:`FlatTrainRequest`)::

    request = parse_job_request({"type": "train", "model": {"spec": {"arch": "mlp"}},
                                 "dataset": "digits", "epochs": 5})
    request.type    # "train"

Planners (:mod:`modelyard.jobs.kinds`) then check what needs the data and the registry.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    TypeAdapter,
    ValidationError,
)

from modelyard.compression.methods import METHOD_NAMES, DistillOptions, Gate, Method
from modelyard.errors import InvalidInput
from modelyard.jobs.resources import JobResources
from modelyard.nn.field_errors import invalid_input
from modelyard.nn.spec_base import Dim
from modelyard.nn.specs import ArchSpec
from modelyard.training.config import OptimizerConfig, PrivacyConfig, TrainConfig
from modelyard.training.distributed_config import DistributedConfig


def _spec_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError("must be an object such as {'arch': 'mlp', 'hidden': [128]}")
    return dict(value)


ArchSpecInRequest: TypeAlias = Annotated[
    dict[str, Any], PlainValidator(_spec_object, json_schema_input_type=ArchSpec)
]
"""A catalog spec whose ``input_shape`` and ``num_outputs`` may default (from the data set, or
the teacher); the planner checks it field by field once they are known, and the schema says
so (:func:`job_request_schema`)."""

# Fields of a catalog spec that a request may leave to the server.
_DEFAULTED_SPEC_FIELDS = ("input_shape", "num_outputs")

FLAT_KEYS = frozenset({"model_name", "data", "learning_rate"})
"""Keys that only the flat form has."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class NewModel(_Request):
    """A new model of the catalog: ``{"spec": {"arch": "mlp", "hidden": [128]}}``."""

    spec: ArchSpecInRequest = Field(
        description="A catalog spec (mlp, cnn, rnn, transformer); input_shape and num_outputs "
        "default from the data set."
    )
    freeze: list[str] | None = Field(
        default=None, description="Parameter name prefixes kept fixed while training."
    )


class FromModel(_Request):
    """Train a version further: ``{"from": "digits-mlp", "version": "latest"}``."""

    from_: str = Field(alias="from", description="The model whose version is trained further.")
    version: int | str = Field(default="latest", description="Version number or alias.")
    num_outputs: Dim | None = Field(
        default=None, description="A new head with this many outputs (transfer learning)."
    )
    freeze: list[str] | None = Field(
        default=None, description="Parameter name prefixes kept fixed (e.g. ['layers.0'])."
    )


def _model_form(value: Any) -> str | None:
    if isinstance(value, Mapping):
        return "from" if "from" in value else "spec" if "spec" in value else "arch"
    return (
        "from" if isinstance(value, FromModel) else "spec" if isinstance(value, NewModel) else None
    )


ModelSection: TypeAlias = Annotated[
    Annotated[FromModel, Tag("from")]
    | Annotated[NewModel, Tag("spec")]
    | Annotated[ArchSpecInRequest, Tag("arch")],
    Discriminator(
        _model_form,
        custom_error_type="model_form",
        custom_error_message="give {'spec': {...}}, {'arch': ...} or {'from': '<model>'}",
    ),
]


class _TrainPlanFields(_Request):
    label: str | None = Field(default=None, description="Label column; default the data set's.")
    features: list[str] | None = Field(default=None, description="Feature columns; default all.")
    output_model: str | None = Field(
        default=None, description="Model the version is registered in; default <dataset>-<arch>."
    )
    validation_dataset: str | None = Field(
        default=None, description="A separate data set to validate on."
    )
    num_outputs: Dim | None = Field(default=None, description="Outputs of a fine-tune's new head.")
    distributed: DistributedConfig | None = Field(
        default=None, description="Spread over processes and machines (ddp, parameter_server)."
    )
    resources: JobResources | None = Field(default=None, description="CPUs and GPUs per worker.")


class TrainRequest(TrainConfig, _TrainPlanFields):
    """Train a catalog model, or a version further: the model, the data and the config."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "type": "train",
                    "model": {"spec": {"arch": "mlp", "hidden": [128, 64]}},
                    "dataset": "digits",
                    "epochs": 20,
                    "optimizer": {"name": "adam", "lr": 0.001},
                    "validation": {"fraction": 0.2},
                }
            ]
        },
    )

    type: Literal["train"] = "train"
    model: ModelSection = Field(description="What is trained: a new catalog model or a version.")
    dataset: str = Field(description="The data set to train on.")


class FlatTrainRequest(TrainConfig, _TrainPlanFields):
    """The one-call form: ``model_name`` (an architecture, or your model to train further),
    ``data``, ``optimizer``, ``learning_rate`` and ``epochs``."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "model_name": "mlp",
                    "data": "iris",
                    "optimizer": "Adam",
                    "learning_rate": 0.001,
                    "epochs": 50,
                }
            ]
        },
    )

    type: Literal["train"] = "train"
    model_name: str | None = Field(
        default=None,
        description="mlp, cnn, rnn or transformer (any case) for a new model, or the name of "
        "one of your models to train its latest version further.",
    )
    model: ModelSection | None = Field(default=None, description="Instead of model_name.")
    data: str | None = Field(default=None, description="The data set to train on.")
    dataset: str | None = Field(default=None, description="Instead of data.")
    learning_rate: float | None = Field(default=None, gt=0.0, description="The optimizer's lr.")


OptimizerChoice: TypeAlias = Annotated[
    OptimizerConfig | str,
    Field(description="A name (adam, adamw, sgd, gd, rmsprop; any case) or an object."),
]


class StudentModel(_Request):
    """The student of a distillation: ``{"spec": {"arch": "mlp", "hidden": [32]}}``."""

    spec: ArchSpecInRequest = Field(
        description="A catalog spec; input_shape and num_outputs default to the teacher's."
    )


def _student_form(value: Any) -> str | None:
    if isinstance(value, Mapping):
        return "spec" if "spec" in value else "arch"
    return "spec" if isinstance(value, StudentModel) else None


StudentSection: TypeAlias = Annotated[
    Annotated[StudentModel, Tag("spec")] | Annotated[ArchSpecInRequest, Tag("arch")],
    Discriminator(_student_form),
]


class VersionRef(_Request):
    """A model version: ``{"model": "digits-mlp", "version": "3"}`` (number or alias)."""

    model: str
    version: str | int = "latest"


class _Compared(_Request):
    eval_dataset: str = Field(description="Held-out data set both sides are evaluated on.")
    label: str | None = None
    output_model: str | None = None
    gate: Gate | None = Field(default=None, description="When a child is not good enough.")
    description: str = ""
    resources: JobResources | None = None


def _method_by_name(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class CompressRequest(_Compared):
    """Quantize, prune, cast or export a version: ``{"type": "compress", "source": {...},
    "method": {"name": "quantize"}, "eval_dataset": "digits"}``."""

    type: Literal["compress"]
    source: VersionRef
    method: Annotated[Method, BeforeValidator(_method_by_name)] = Field(
        description="The method: an object, or its name alone for its defaults."
    )


class FineTuneRequest(_Compared):
    """Train a version (catalog or Keras) further on a data set, its architecture unchanged."""

    type: Literal["finetune"]
    source: VersionRef
    dataset: str
    epochs: Annotated[int, Field(gt=0, le=1000)] = 3
    batch_size: Annotated[int, Field(gt=0)] = 64
    optimizer: OptimizerChoice | None = None
    seed: Annotated[int, Field(ge=0)] = 0
    privacy: PrivacyConfig | None = Field(
        default=None,
        description="Fine-tune with differential privacy (DP-SGD), as train jobs do; catalog "
        "versions only.",
    )


class DistillRequest(_Compared):
    """Train a small student on a teacher's outputs: ``{"type": "distill", "teacher": {...},
    "student": {"spec": {...}}, "dataset": ...}``."""

    type: Literal["distill"]
    teacher: VersionRef
    student: StudentSection
    dataset: str
    temperature: Annotated[float, Field(gt=0.0, le=100.0)] = DistillOptions.model_fields[
        "temperature"
    ].default
    alpha: Annotated[float, Field(ge=0.0, le=1.0)] = DistillOptions.model_fields["alpha"].default
    epochs: Annotated[int, Field(gt=0, le=1000)] = 30
    batch_size: Annotated[int, Field(gt=0)] = 64
    optimizer: OptimizerChoice | None = None
    seed: Annotated[int, Field(ge=0)] = 0


class EvaluateRequest(_Request):
    """Evaluate a version on a data set: ``{"type": "evaluate", "source": {...},
    "eval_dataset": ...}``."""

    type: Literal["evaluate"]
    source: VersionRef
    eval_dataset: str
    label: str | None = None
    resources: JobResources | None = None


class ExplainRequest(_Request):
    """Global feature importance of a version over a data set: ``{"type": "explain",
    "source": {"model": "iris-mlp", "version": 2}, "dataset": "iris", "method":
    "occlusion"}``. Each input value's mean absolute attribution over ``rows`` rows (spread
    evenly through the data set) is stored on the version, under
    ``params.feature_importance.<method>``."""

    type: Literal["explain"]
    source: VersionRef
    dataset: str = Field(description="The rows to explain (features as the model takes them).")
    label: str | None = Field(default=None, description="The label column or array to leave out.")
    method: Literal["integrated_gradients", "saliency", "occlusion", "kernel_shap"] = Field(
        default="occlusion",
        description="Gradient methods need a catalog (torch) version; occlusion and "
        "kernel_shap run on every format.",
    )
    rows: Annotated[int, Field(gt=0, le=4096)] = 256
    n_steps: Annotated[int, Field(gt=0, le=512)] | None = None
    n_samples: Annotated[int, Field(gt=0, le=4096)] | None = None
    window: Annotated[int, Field(gt=0)] | None = None
    seed: Annotated[int, Field(ge=0)] = 0
    resources: JobResources | None = None


class LlmHyperparameters(_Request):
    """OpenAI's fine-tuning hyperparameters; ``auto`` picks from the data."""

    n_epochs: Literal["auto"] | Annotated[int, Field(gt=0, le=50)] = "auto"
    batch_size: Literal["auto"] | Annotated[int, Field(gt=0, le=256)] = "auto"
    learning_rate_multiplier: Literal["auto"] | Annotated[float, Field(gt=0, le=1e4)] = "auto"


class LoraOptions(_Request):
    """Low-rank adapters of ``method: lora``."""

    r: Annotated[int, Field(gt=0, le=1024)] = 8
    alpha: Annotated[int, Field(gt=0, le=4096)] = 16
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


class LlmModelRef(_Request):
    """The causal language model to fine-tune: ``{"from": "tiny-gpt2", "version": "latest"}``."""

    from_: str = Field(alias="from")
    version: int | str = "latest"


class LlmFineTuneRequest(_Request):
    """Fine-tune a causal language model on chat examples (a JSONL file)."""

    type: Literal["llm_finetune"]
    model: LlmModelRef
    training_file: str = Field(description="An uploaded JSONL file of chat examples.")
    validation_file: str | None = None
    method: Literal["full", "lora"] = "full"
    hyperparameters: LlmHyperparameters | None = None
    lora: LoraOptions | None = None
    suffix: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")] | None = None
    seed: Annotated[int, Field(ge=0)] | None = None
    base_model_id: str | None = None
    resources: JobResources | None = None


KIND_NAMES = ("train", "compress", "finetune", "distill", "evaluate", "explain", "llm_finetune")


def _kind(value: Any) -> str | None:
    if isinstance(value, Mapping):
        kind = value.get("type")
        if kind is None and FLAT_KEYS & set(value):
            return "flat"
        if kind == "train" and FLAT_KEYS & set(value):
            return "flat"
        return kind if isinstance(kind, str) and kind in KIND_NAMES else None
    if isinstance(value, FlatTrainRequest):
        return "flat"
    kind = getattr(value, "type", None)
    return kind if isinstance(kind, str) else None


JobRequest: TypeAlias = Annotated[
    Annotated[TrainRequest, Tag("train")]
    | Annotated[FlatTrainRequest, Tag("flat")]
    | Annotated[CompressRequest, Tag("compress")]
    | Annotated[FineTuneRequest, Tag("finetune")]
    | Annotated[DistillRequest, Tag("distill")]
    | Annotated[EvaluateRequest, Tag("evaluate")]
    | Annotated[ExplainRequest, Tag("explain")]
    | Annotated[LlmFineTuneRequest, Tag("llm_finetune")],
    Discriminator(
        _kind,
        custom_error_type="job_type",
        custom_error_message=f"type: must be one of {', '.join(KIND_NAMES)}",
    ),
]
"""A job request of any kind; ``type`` says which (a flat train request has none)."""


@functools.cache
def job_request_adapter() -> TypeAdapter[JobRequest]:
    """The validator (and JSON schema) of :data:`JobRequest`."""
    return TypeAdapter(JobRequest)


def job_request_schema(ref_template: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON schema of :data:`JobRequest` and the definitions it refers to.

    The catalog specs in it are the request's: ``input_shape`` and ``num_outputs`` optional.
    """
    schema = dict(job_request_adapter().json_schema(ref_template=ref_template))
    definitions: dict[str, Any] = schema.pop("$defs", {})
    for name in ("MLPSpec", "CNNSpec", "RNNSpec", "TransformerSpec"):
        spec = definitions.get(name)
        if spec is None:
            continue
        spec["required"] = [f for f in spec.get("required", []) if f not in _DEFAULTED_SPEC_FIELDS]
        for field in _DEFAULTED_SPEC_FIELDS:
            prop = spec.get("properties", {}).get(field)
            if prop is not None:
                prop["description"] = (
                    f"{prop.get('description', '')} Default: from the data (or the teacher)."
                ).strip()
    return schema, definitions


AnyJobRequest: TypeAlias = (
    TrainRequest
    | FlatTrainRequest
    | CompressRequest
    | FineTuneRequest
    | DistillRequest
    | EvaluateRequest
    | ExplainRequest
    | LlmFineTuneRequest
)


def parse_job_request(body: Any) -> AnyJobRequest:
    """The checked request; InvalidInput names every field at fault."""
    if not isinstance(body, Mapping):
        raise InvalidInput("body: a job is a JSON object with a 'type'", field="body")
    try:
        parsed: AnyJobRequest = job_request_adapter().validate_python(dict(body))
    except ValidationError as exc:
        raise invalid_input(exc, "", clean=_without_tags) from None
    return parsed


# The tags pydantic puts in an error's location below a field that holds a tagged union.
_UNION_TAGS: dict[str, frozenset[str]] = {
    "model": frozenset({"from", "spec", "arch"}),
    "student": frozenset({"spec", "arch"}),
    "method": frozenset(METHOD_NAMES),
}


def _without_tags(loc: list[int | str]) -> list[int | str]:
    """``["train", "model", "from", "bogus"]`` becomes ``["model", "bogus"]``."""
    if loc and loc[0] in (*KIND_NAMES, "flat"):
        loc = loc[1:]
    out: list[int | str] = []
    for part in loc:
        if isinstance(part, str) and "[" in part:
            continue  # a validator's own name, such as function-after[...]
        if out and isinstance(out[-1], str) and part in _UNION_TAGS.get(out[-1], ()):
            continue
        out.append(part)
    return out
