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

Each kind's model lives in its package (``jobs/train/request.py``, …); planners
(:mod:`modelyard.jobs.kinds`) then check what needs the data and the registry.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import Discriminator, Field, Tag, TypeAdapter, ValidationError

from modelyard.compression.methods import METHOD_NAMES
from modelyard.errors import InvalidInput
from modelyard.jobs.compress.request import CompressRequest, DistillRequest
from modelyard.jobs.evaluate.request import EvaluateRequest
from modelyard.jobs.explain.request import ExplainRequest
from modelyard.jobs.finetune.request import FineTuneRequest
from modelyard.jobs.request_base import RequestModel
from modelyard.jobs.resources import JobResources
from modelyard.jobs.train.request import FLAT_KEYS, FlatTrainRequest, TrainRequest
from modelyard.nn.field_errors import invalid_input

# Fields of a catalog spec that a request may leave to the server.
_DEFAULTED_SPEC_FIELDS = ("input_shape", "num_outputs")


class LlmHyperparameters(RequestModel):
    """OpenAI's fine-tuning hyperparameters; ``auto`` picks from the data."""

    n_epochs: Literal["auto"] | Annotated[int, Field(gt=0, le=50)] = "auto"
    batch_size: Literal["auto"] | Annotated[int, Field(gt=0, le=256)] = "auto"
    learning_rate_multiplier: Literal["auto"] | Annotated[float, Field(gt=0, le=1e4)] = "auto"


class LoraOptions(RequestModel):
    """Low-rank adapters of ``method: lora``."""

    r: Annotated[int, Field(gt=0, le=1024)] = 8
    alpha: Annotated[int, Field(gt=0, le=4096)] = 16
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    merge: bool = Field(
        default=False,
        description="Merge the adapter into a full copy of the weights (an hf version). By "
        "default the job registers the adapter alone (a lora version) and serves it on the "
        "base model's deployment.",
    )


class LlmModelRef(RequestModel):
    """The causal language model to fine-tune: ``{"from": "tiny-gpt2", "version": "latest"}``."""

    from_: str = Field(alias="from")
    version: int | str = "latest"


class LlmFineTuneRequest(RequestModel):
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
