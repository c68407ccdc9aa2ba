"""Planning compress, finetune, distill and evaluate jobs, checked before they are queued.

Everything knowable without running the job is checked here: the versions and data sets
exist and are readable, the method fits the source's format, the layers named exist, and
every data set's rows fit the model's input. A request that does not fit is refused with
a 422 naming the field. The stored plan pins the versions by number and digest.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from modelyard.auth.access import Caller, Permission
from modelyard.compression.methods import (
    DistillOptions,
    Method,
    parse_method,
    parse_model,
)
from modelyard.datasets.service import DatasetService
from modelyard.db.tables import Dataset, ModelVersion
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.jobs.plans import DistillPlan, EvaluatePlan, SourcePlan
from modelyard.jobs.requests import (
    CompressRequest,
    DistillRequest,
    EvaluateRequest,
    FineTuneRequest,
    StudentModel,
    VersionRef,
)
from modelyard.naming import check_name
from modelyard.nn.field_errors import invalid_input
from modelyard.nn.specs import parse_spec
from modelyard.registry.service import ModelRegistry


class _Planner:
    """One planning call: the caller, the services and a scratch folder."""

    def __init__(
        self, caller: Caller, datasets: DatasetService, registry: ModelRegistry, work: Path
    ) -> None:
        self.caller = caller
        self.datasets = datasets
        self.registry = registry
        self.work = work

    def version(self, ref: VersionRef, field: str) -> ModelVersion:
        try:
            return self.registry.get_version(self.caller, ref.model, str(ref.version))
        except NotFound as exc:
            raise InvalidInput(f"{field}: {exc.detail}") from exc

    def dataset(self, name: str, field: str) -> Dataset:
        try:
            return self.datasets.get(self.caller, name)
        except NotFound as exc:
            raise InvalidInput(f"{field}: {exc.detail}") from exc

    def rows(self, row: Dataset, label: str | None, field: str) -> tuple[Any, Any]:
        # Loading rows loads PyTorch: the server imports it when a job is first planned.
        from modelyard.training.data import load_xy

        files = self.datasets.canonical_files(row, self.work / field.replace(".", "_"))
        try:
            return load_xy(files, row.kind, label or row.label, None)  # type: ignore[arg-type]
        except InvalidInput as exc:
            raise InvalidInput(f"{field}: {exc.detail}") from exc

    def check_rows(self, version: ModelVersion, x: Any, y: Any, field: str) -> Any:
        """The version's preprocessing, after checking that ``x`` and ``y`` fit it."""
        # These load PyTorch, which the server imports only once it plans a job.
        from modelyard.compression.source import preprocessor_for
        from modelyard.training.preprocess import row_shape_fits

        pre = preprocessor_for(version.params, version.signature, y)
        row = [int(d) for d in x.shape[1:]]
        if not row_shape_fits(row, pre.input_shape):
            raise InvalidInput(
                f"{field}: rows of shape {row} do not fit the model's input shape {pre.input_shape}"
            )
        if len(y) != len(x) or len(x) == 0:
            raise InvalidInput(f"{field}: {len(x)} rows and {len(y)} labels")
        if pre.task == "classification" and y.dtype.kind in "iu" and pre.num_outputs > 1:
            high = int(y.max())
            if high >= pre.num_outputs:
                raise InvalidInput(
                    f"{field}: labels go up to {high}, but the model has {pre.num_outputs} outputs"
                )
        return pre

    def output(self, name: str | None, default: str, what: str) -> str:
        output = name or default
        check_name(output, "output_model")
        try:
            self.registry.get_model(self.caller, output, Permission.WRITE)
        except NotFound:
            try:
                self.registry.create_model(self.caller, output, description=what)
            except Conflict as exc:
                raise InvalidInput(f"output_model: '{output}' belongs to someone else") from exc
        return output


def _parse(model: type[BaseModel], body: Mapping[str, Any]) -> Any:
    try:
        return model.model_validate(dict(body))
    except ValidationError as exc:
        raise invalid_input(exc, "") from None


def _stored(kind: type[BaseModel], plan: dict[str, Any]) -> dict[str, Any]:
    """The plan as the job stores it, checked against its model."""
    return kind.model_validate(plan).model_dump(mode="json")


def _pinned(version: ModelVersion, name: str) -> dict[str, Any]:
    return {
        "model": name,
        "version": version.version,
        "sha256": version.sha256,
        "format": version.format,
    }


def _gate(request: CompressRequest | FineTuneRequest | DistillRequest) -> dict[str, Any] | None:
    return request.gate.model_dump(mode="json") if request.gate is not None else None


def _plan_source_job(
    planner: _Planner,
    request: CompressRequest | FineTuneRequest,
    method: Method,
    fit_dataset: str | None,
) -> dict[str, Any]:
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
    x, y = planner.rows(eval_row, label, "eval_dataset")
    planner.check_rows(version, x, y, "eval_dataset")
    _check_layers(method, version)
    fit_row = None
    if fit_dataset is not None:
        field = _fit_field(method)
        fit_row = planner.dataset(fit_dataset, field)
        fx, fy = planner.rows(fit_row, label, field)
        planner.check_rows(version, fx, fy, field)
    output = planner.output(
        request.output_model, request.source.model, f"compressed from {request.source.model}"
    )
    return {
        "type": request.type,
        "source": _pinned(version, request.source.model),
        "method": method.model_dump(mode="json"),
        "eval_dataset": eval_row.name,
        "eval_dataset_id": eval_row.id,
        "fit_dataset": fit_row.name if fit_row is not None else None,
        "fit_dataset_id": fit_row.id if fit_row is not None else None,
        "label": label,
        "output_model": output,
        "gate": _gate(request),
        "description": request.description,
    }


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
) -> dict[str, Any]:
    """Validate a compress request and return the job's stored spec."""
    request: CompressRequest = _parse(CompressRequest, body)
    method = request.method
    planner = _Planner(caller, datasets, registry, work)
    plan = _plan_source_job(planner, request, method, _fit_dataset(method))
    return _stored(SourcePlan, {**plan, "request": dict(body)})


def plan_finetune(
    caller: Caller,
    body: Mapping[str, Any],
    datasets: DatasetService,
    registry: ModelRegistry,
    work: Path,
) -> dict[str, Any]:
    """Validate a finetune request (catalog or Keras source) and return the stored spec."""
    request: FineTuneRequest = _parse(FineTuneRequest, body)
    fit: dict[str, Any] = {
        "dataset": request.dataset,
        "epochs": request.epochs,
        "batch_size": request.batch_size,
        "seed": request.seed,
    }
    if request.optimizer is not None:
        fit["optimizer"] = request.optimizer
    raw: dict[str, Any] = {"name": "finetune", "fit": fit}
    if request.privacy is not None:
        raw["privacy"] = request.privacy.model_dump(mode="json")
    method = parse_method(raw)
    planner = _Planner(caller, datasets, registry, work)
    plan = _plan_source_job(planner, request, method, request.dataset)
    if request.privacy is not None:
        plan["privacy"] = _plan_private_finetune(planner, request)
    return _stored(SourcePlan, {**plan, "request": dict(body)})


def _plan_private_finetune(planner: _Planner, request: FineTuneRequest) -> dict[str, Any]:
    """A private fine-tune's noise, sampling, steps and (ε, δ): catalog versions only, whose
    layers Opacus can train."""
    # Opacus (and PyTorch) are loaded only when a private job is planned.
    from modelyard.training.privacy import check_private_spec, plan_privacy

    assert request.privacy is not None
    version = planner.version(request.source, "source")
    if version.format != "safetensors" or version.spec is None:
        raise InvalidInput(
            f"privacy: version {version.version} of '{request.source.model}' is "
            f"{version.format}; only catalog versions are fine-tuned privately",
            field="privacy",
        )
    if (version.params or {}).get("compression"):
        raise InvalidInput("privacy: a compressed version is not fine-tuned privately")
    check_private_spec(parse_spec(version.spec))
    row = planner.dataset(request.dataset, "dataset")
    planned = plan_privacy(
        request.privacy, rows=row.num_rows, batch_size=request.batch_size, epochs=request.epochs
    )
    return planned.to_dict()


def plan_distill(
    caller: Caller,
    body: Mapping[str, Any],
    datasets: DatasetService,
    registry: ModelRegistry,
    work: Path,
) -> dict[str, Any]:
    """Validate a distill request and return the stored spec.

    The student's ``input_shape`` and ``num_outputs`` default to the teacher's; it reads the
    teacher's preprocessed inputs, so its input shape must be the teacher's.
    """
    request: DistillRequest = _parse(DistillRequest, body)
    planner = _Planner(caller, datasets, registry, work)
    teacher = planner.version(request.teacher, "teacher")
    eval_row = planner.dataset(request.eval_dataset, "eval_dataset")
    label = request.label or eval_row.label
    x, y = planner.rows(eval_row, label, "eval_dataset")
    pre = planner.check_rows(teacher, x, y, "eval_dataset")
    if pre.task != "classification":
        raise InvalidInput("teacher: distillation needs a classification model")
    fit_row = planner.dataset(request.dataset, "dataset")
    fx, fy = planner.rows(fit_row, label, "dataset")
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
    return _stored(
        DistillPlan,
        {
            "type": "distill",
            "teacher": _pinned(teacher, request.teacher.model),
            "student_spec": student.model_dump(mode="json"),
            "options": options.model_dump(mode="json"),
            "eval_dataset": eval_row.name,
            "eval_dataset_id": eval_row.id,
            "fit_dataset": fit_row.name,
            "fit_dataset_id": fit_row.id,
            "label": label,
            "output_model": output,
            "gate": _gate(request),
            "description": request.description,
            "request": dict(body),
        },
    )


def plan_evaluate(
    caller: Caller,
    body: Mapping[str, Any],
    datasets: DatasetService,
    registry: ModelRegistry,
    work: Path,
) -> dict[str, Any]:
    """Validate an evaluate request and return the stored spec."""
    request: EvaluateRequest = _parse(EvaluateRequest, body)
    planner = _Planner(caller, datasets, registry, work)
    version = planner.version(request.source, "source")
    eval_row = planner.dataset(request.eval_dataset, "eval_dataset")
    label = request.label or eval_row.label
    x, y = planner.rows(eval_row, label, "eval_dataset")
    planner.check_rows(version, x, y, "eval_dataset")
    return _stored(
        EvaluatePlan,
        {
            "type": "evaluate",
            "source": _pinned(version, request.source.model),
            "eval_dataset": eval_row.name,
            "eval_dataset_id": eval_row.id,
            "label": label,
            "request": dict(body),
        },
    )
