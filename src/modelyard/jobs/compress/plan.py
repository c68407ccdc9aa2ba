"""The plans of compress and distill jobs (:class:`SourcePlan`, :class:`DistillPlan`), checked
before they are queued.

Everything knowable without running the job is checked here: the versions and data sets
exist and are readable, the method fits the source's format, the layers named exist, and
every data set's rows fit the model's input. A request that does not fit is refused with
a 422 naming the field. The plan pins the versions by number and digest. A finetune job
(:mod:`modelyard.jobs.finetune`) is a source job too, its method ``finetune``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from modelyard.auth.access import Caller
from modelyard.compression.methods import DistillOptions, Method, parse_model
from modelyard.datasets.service import DatasetService
from modelyard.db.tables import ModelVersion
from modelyard.errors import InvalidInput
from modelyard.jobs.compress.request import CompressRequest, DistillRequest, StudentModel
from modelyard.jobs.finetune.request import FineTuneRequest
from modelyard.jobs.planner import Planner, parse_request, pinned
from modelyard.jobs.plans import ChildPlan, PinnedVersion
from modelyard.nn.specs import parse_spec
from modelyard.registry.service import ModelRegistry


class SourcePlan(ChildPlan):
    """A compress or finetune job: a method applied to one version."""

    type: Literal["compress", "finetune"]
    source: PinnedVersion
    method: Method
    privacy: dict[str, Any] | None = Field(
        default=None, description="A private fine-tune's plan, as a train plan's privacy."
    )


class DistillPlan(ChildPlan):
    """A distill job: a student trained on a teacher's outputs."""

    type: Literal["distill"] = "distill"
    teacher: PinnedVersion
    student_spec: dict[str, Any]
    options: DistillOptions
    fit_dataset: str
    fit_dataset_id: str


def plan_source_job(
    planner: Planner,
    request: CompressRequest | FineTuneRequest,
    method: Method,
    fit_dataset: str | None,
    body: Mapping[str, Any],
    privacy: dict[str, Any] | None = None,
) -> SourcePlan:
    """The plan of ``method`` applied to the request's source version (``body``: the request
    as sent)."""
    # These load PyTorch, which the server imports only once it plans a job.
    from modelyard.compression.apply import check_applicable
    from modelyard.compression.source import Source

    version = planner.version(request.source, "source")
    source = Source(
        version.format,
        Path(version.sha256),
        version.spec,
        dict(version.params),
        version.signature,
        load=_not_loaded,
    )
    check_applicable(method, source)
    eval_row = planner.dataset(request.eval_dataset, "eval_dataset")
    label = request.label or eval_row.label
    x, y = planner.rows(eval_row, label, "eval_dataset", version)
    planner.check_rows(version, x, y, "eval_dataset")
    _check_layers(method, version)
    fit_row = None
    if fit_dataset is not None:
        field = _fit_field(method)
        fit_row = planner.dataset(fit_dataset, field)
        fx, fy = planner.rows(fit_row, label, field, version)
        planner.check_rows(version, fx, fy, field)
    output = planner.output(
        request.output_model, request.source.model, f"compressed from {request.source.model}"
    )
    return SourcePlan(
        type=request.type,
        source=pinned(version, request.source.model),
        method=method,
        eval_dataset=eval_row.name,
        eval_dataset_id=eval_row.id,
        fit_dataset=fit_row.name if fit_row is not None else None,
        fit_dataset_id=fit_row.id if fit_row is not None else None,
        label=label,
        output_model=output,
        gate=request.gate,
        description=request.description,
        privacy=privacy,
        request=dict(body),
    )


def _not_loaded() -> Any:
    raise RuntimeError("models are loaded by the job, not while planning it")


def _fit_field(method: Any) -> str:
    name = getattr(method, "name", "")
    if name == "quantize":
        return "method.calibration_dataset"
    if name == "prune":
        return "method.fine_tune.dataset"
    return "dataset"


def _fit_dataset(method: Any) -> str | None:
    name = getattr(method, "name", "")
    if name == "quantize":
        calibration: str | None = method.calibration_dataset
        return calibration
    if name == "prune" and method.fine_tune is not None:
        dataset: str = method.fine_tune.dataset
        return dataset
    if name == "finetune":
        fit_dataset: str = method.fit.dataset
        return fit_dataset
    return None


def _check_layers(method: Any, version: ModelVersion) -> None:
    """Names in ``method.modules`` must be layers of the (catalog) model."""
    if version.format != "safetensors" or version.spec is None:
        return
    # These load PyTorch, which the server imports only once it plans a job.
    import torch

    from modelyard.compression.apply import quantize_backend
    from modelyard.compression.prune import structured_targets, unstructured_targets
    from modelyard.compression.quantize import choose_modules
    from modelyard.nn.catalog import build_model

    spec = parse_spec(version.spec)
    with torch.device("meta"):
        model = build_model(spec)
    if method.name == "quantize" and quantize_backend(method, "catalog") == "torchao":
        choose_modules(model, method.scheme, method.modules, method.group_size)
    elif method.name == "prune" and method.kind == "unstructured":
        unstructured_targets(model, method.modules)
    elif method.name == "prune":
        structured_targets(spec, method.modules)


def plan_compress(
    caller: Caller,
    body: Mapping[str, Any],
    datasets: DatasetService,
    registry: ModelRegistry,
    work: Path,
) -> SourcePlan:
    """Validate a compress request and return the job's plan."""
    request = parse_request(CompressRequest, body)
    planner = Planner(caller, datasets, registry, work)
    return plan_source_job(planner, request, request.method, _fit_dataset(request.method), body)


def plan_distill(
    caller: Caller,
    body: Mapping[str, Any],
    datasets: DatasetService,
    registry: ModelRegistry,
    work: Path,
) -> DistillPlan:
    """Validate a distill request and return the job's plan.

    The student's ``input_shape`` and ``num_outputs`` default to the teacher's; it reads the
    teacher's preprocessed inputs, so its input shape must be the teacher's.
    """
    request = parse_request(DistillRequest, body)
    planner = Planner(caller, datasets, registry, work)
    teacher = planner.version(request.teacher, "teacher")
    eval_row = planner.dataset(request.eval_dataset, "eval_dataset")
    label = request.label or eval_row.label
    x, y = planner.rows(eval_row, label, "eval_dataset", teacher)
    pre = planner.check_rows(teacher, x, y, "eval_dataset")
    if pre.task != "classification":
        raise InvalidInput("teacher: distillation needs a classification model")
    fit_row = planner.dataset(request.dataset, "dataset")
    fx, fy = planner.rows(fit_row, label, "dataset", teacher)
    planner.check_rows(teacher, fx, fy, "dataset")
    given = request.student
    raw_student = given.spec if isinstance(given, StudentModel) else given
    student_raw = {
        "input_shape": pre.input_shape,
        "num_outputs": pre.num_outputs,
        **dict(raw_student),
    }
    student = parse_spec(student_raw, where="student.spec")
    if list(student.input_shape) != list(pre.input_shape):
        raise InvalidInput(
            f"student.spec.input_shape: the student reads the teacher's inputs, shaped "
            f"{pre.input_shape}, not {student.input_shape}"
        )
    fit: dict[str, Any] = {
        "dataset": fit_row.name,
        "epochs": request.epochs,
        "batch_size": request.batch_size,
        "seed": request.seed,
    }
    if request.optimizer is not None:
        fit["optimizer"] = request.optimizer
    options = parse_model(
        DistillOptions,
        {"temperature": request.temperature, "alpha": request.alpha, "fit": fit},
        "",
    )
    output = planner.output(
        request.output_model, request.teacher.model, f"distilled from {request.teacher.model}"
    )
    return DistillPlan(
        teacher=pinned(teacher, request.teacher.model),
        student_spec=student.model_dump(mode="json"),
        options=options,
        eval_dataset=eval_row.name,
        eval_dataset_id=eval_row.id,
        fit_dataset=fit_row.name,
        fit_dataset_id=fit_row.id,
        label=label,
        output_model=output,
        gate=request.gate,
        description=request.description,
        request=dict(body),
    )
