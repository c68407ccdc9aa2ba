"""The plan of a train job (:class:`TrainPlan`), built by :func:`plan_train` from a request and
checked against its data before it is queued."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from modelyard.auth.access import Caller, Permission
from modelyard.datasets.service import DatasetService
from modelyard.db.tables import Dataset
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.jobs.plans import JobPlan, PlanPart
from modelyard.jobs.train.flat import infer_arch_defaults, normalize_request, split_request
from modelyard.naming import check_name
from modelyard.nn.specs import ArchSpec, parse_spec
from modelyard.registry.service import ModelRegistry
from modelyard.training.config import TrainConfig, parse_config
from modelyard.training.distributed_config import DistributedConfig, parse_distributed


class InitWeights(PlanPart):
    """The version a train job starts from (a fine-tune), pinned by digest."""

    model: str
    version: int
    sha256: str
    replace_head: bool = False


class TrainPlan(JobPlan):
    """A train job: the architecture, the data, the config and where the version goes."""

    type: Literal["train"] = "train"
    arch_spec: ArchSpec
    init: InitWeights | None = None
    dataset: str
    dataset_id: str
    label: str | None
    features: list[str] | None = None
    validation_dataset: str | None = None
    output_model: str
    config: TrainConfig
    distributed: DistributedConfig | None = None
    privacy: dict[str, Any] | None = Field(
        default=None,
        description="A private run's plan: noise_multiplier, sample_rate, steps, and the "
        "epsilon and delta the whole run spends (what the data set's budget reserves).",
    )


def plan_train(
    caller: Caller,
    body: Mapping[str, Any],
    datasets: DatasetService,
    registry: ModelRegistry,
    work: Path,
) -> TrainPlan:
    """Validate a train request (structured or flat) and return the job's plan."""
    # Reading the data set loads PyTorch: the server imports it when a job is first planned.
    from modelyard.training.data import check_fit, load_xy

    request = normalize_request(body, lambda name: _model_exists(caller, registry, name))
    raw_distributed = request.pop("distributed", None)
    plan, raw_config = split_request(request)
    raw_config.pop("type", None)
    model = plan.get("model")
    if not isinstance(model, Mapping):
        raise InvalidInput("model: give {'spec': {...}} or {'from': '<model>', 'version': ...}")
    model, raw_config = _model_section(model, raw_config)
    config = parse_config(raw_config, where="")
    distributed = None
    if raw_distributed is not None:
        distributed = parse_distributed(raw_distributed)
        batch = config.batch_size
        if distributed.strategy == "ddp" and batch is not None and batch % distributed.world_size:
            raise InvalidInput(
                f"batch_size: the global batch ({batch}) must split evenly over "
                f"{distributed.world_size} workers"
            )

    dataset = _dataset(caller, datasets, plan.get("dataset"), "dataset")
    label = plan.get("label") or dataset.label
    features = plan.get("features")
    if features is not None and (
        not isinstance(features, list) or not all(isinstance(f, str) for f in features)
    ):
        raise InvalidInput("features: must be a list of names")
    files = datasets.canonical_files(dataset, work / "train")
    x, y = load_xy(files, dataset.kind, label, features)  # type: ignore[arg-type]

    init: dict[str, Any] | None = None
    if "from" in model:
        init, arch, parent_config = _fine_tune_source(caller, registry, model)
        config = _inherit_preprocessing(config, raw_config, parent_config, model["from"])
        num_outputs = plan.get("num_outputs", model.get("num_outputs"))
        if num_outputs is not None:
            arch = {**arch, "num_outputs": num_outputs}
            init["replace_head"] = True
    else:
        loss = config.loss.name if config.loss else None
        is_regression = loss in ("mse", "l1") or (loss is None and y.dtype.kind == "f")
        arch = infer_arch_defaults(
            model,
            x_shape=tuple(x.shape),
            label_kind="regression" if is_regression else "classification",
            num_classes=_num_classes(y),
        )
    spec = parse_spec(arch, where="model.spec")
    check_fit(spec, config, tuple(x.shape), x.dtype, y)
    _check_freeze(spec, config.freeze)

    validation = plan.get("validation_dataset")
    if validation is not None:
        val_row = _dataset(caller, datasets, validation, "validation_dataset")
        val_files = datasets.canonical_files(val_row, work / "val")
        vx, vy = load_xy(val_files, val_row.kind, label, features)  # type: ignore[arg-type]
        check_fit(spec, config, tuple(vx.shape), vx.dtype, vy, split="validation")

    privacy = _plan_privacy(spec, config, len(x), validation is not None, distributed)

    output = plan.get("output_model") or f"{dataset.name}-{spec.arch}"
    if not isinstance(output, str):
        raise InvalidInput("output_model: must be a model name")
    check_name(output, "output_model")
    _ensure_output_model(caller, registry, output, spec.arch)
    return TrainPlan(
        arch_spec=spec,
        init=InitWeights.model_validate(init) if init is not None else None,
        dataset=dataset.name,
        dataset_id=dataset.id,
        label=label,
        features=features,
        validation_dataset=validation,
        output_model=output,
        config=config,
        distributed=distributed,
        privacy=privacy,
        request=dict(body),
    )


def _plan_privacy(
    spec: Any,
    config: TrainConfig,
    rows: int,
    separate_validation: bool,
    distributed: DistributedConfig | None,
) -> dict[str, Any] | None:
    """A private run's noise, sampling rate, steps and (ε, δ), checked now: layers Opacus
    cannot train, a δ too large for the data, or an ε that no noise reaches are 422s."""
    if config.privacy is None:
        return None
    # Opacus (and PyTorch) are loaded only when a private job is planned.
    from modelyard.training.dataset import held_out_rows
    from modelyard.training.privacy import check_private_spec, plan_privacy

    if distributed is not None and distributed.strategy != "ddp":
        raise InvalidInput(
            "distributed.strategy: private training runs in one process or with ddp; the "
            "parameter server's stale updates are not accounted",
            field="distributed.strategy",
        )
    check_private_spec(spec)
    if not separate_validation:
        rows -= held_out_rows(rows, config.validation.fraction)
    planned = plan_privacy(
        config.privacy, rows=rows, batch_size=config.batch_size, epochs=config.epochs
    )
    return planned.to_dict()


MODEL_FIELDS = {
    "from": ("from", "version", "num_outputs", "freeze"),
    "spec": ("spec", "freeze"),
}


def _model_section(
    model: Mapping[str, Any], raw_config: dict[str, Any]
) -> tuple[Mapping[str, Any], dict[str, Any]]:
    """Refuse unknown fields of ``model``; a ``freeze`` written there (as docs/api.md shows it)
    counts exactly as one beside it: it moves into the training config."""
    form = "from" if "from" in model else "spec" if "spec" in model else None
    if form is None:
        return model, raw_config  # a bare catalog spec, which parse_spec checks field by field
    unknown = sorted(set(model) - set(MODEL_FIELDS[form]))
    if unknown:
        raise InvalidInput(
            f"model.{unknown[0]}: unknown field; model {{'{form}': ...}} takes "
            f"{', '.join(MODEL_FIELDS[form])}",
            field=f"model.{unknown[0]}",
        )
    if "freeze" not in model:
        return model, raw_config
    if "freeze" in raw_config:
        raise InvalidInput("model.freeze: give freeze once, in model or beside it")
    rest = {k: v for k, v in model.items() if k != "freeze"}
    return rest, {**raw_config, "freeze": model["freeze"]}


def _check_freeze(spec: Any, prefixes: list[str]) -> None:
    """Every frozen prefix names parameters of the model, or the job is refused now."""
    if not prefixes:
        return
    # Building the model loads PyTorch, which the server imports only once it plans a job.
    from modelyard.nn.catalog import build_model
    from modelyard.training.finetune import freeze

    freeze(build_model(spec), prefixes)


def _model_exists(caller: Caller, registry: ModelRegistry, name: str) -> bool:
    try:
        registry.get_model(caller, name)
    except NotFound:
        return False
    return True


def _dataset(caller: Caller, datasets: DatasetService, name: Any, field: str) -> Dataset:
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{field}: name a data set")
    try:
        return datasets.get(caller, name)
    except NotFound as exc:
        raise InvalidInput(f"{field}: {exc.detail}") from exc


def _fine_tune_source(
    caller: Caller, registry: ModelRegistry, model: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The parent version's reference, architecture and training config."""
    name = model["from"]
    ref = str(model.get("version", "latest"))
    if not isinstance(name, str):
        raise InvalidInput("model.from: must be a model name")
    try:
        version = registry.get_version(caller, name, ref)
    except NotFound as exc:
        raise InvalidInput(f"model.from: {exc.detail}") from exc
    compression = (version.params or {}).get("compression")
    if compression and compression.get("method") != "prune":
        raise InvalidInput(
            f"model.from: version {version.version} of '{name}' is compressed "
            f"({compression.get('method')}); train its uncompressed parent, or fine-tune it "
            "with a 'finetune' job"
        )
    if version.format != "safetensors" or version.spec is None:
        raise InvalidInput(
            f"model.from: version {version.version} of '{name}' is {version.format}; only "
            "catalog versions (spec + safetensors) can be trained further"
        )
    return (
        {"model": name, "version": version.version, "sha256": version.sha256},
        dict(version.spec),
        dict((version.params or {}).get("config") or {}),
    )


def _inherit_preprocessing(
    config: TrainConfig,
    raw_config: Mapping[str, Any],
    parent_config: Mapping[str, Any],
    parent: str,
) -> TrainConfig:
    """A fine-tune transforms its inputs as its parent did: the model's weights expect it, and
    a deployment following the model must not see its input scale change."""
    inherited = parent_config.get("preprocessing")
    if not isinstance(inherited, Mapping):
        return config
    given = raw_config.get("preprocessing")
    if given is None:
        return parse_config({**raw_config, "preprocessing": dict(inherited)}, where="")
    wanted = config.preprocessing
    for name in ("scale", "standardize"):
        if getattr(wanted, name) != inherited.get(name, getattr(wanted, name)):
            raise InvalidInput(
                f"preprocessing.{name}: '{parent}' was trained with {name}="
                f"{inherited.get(name)}; a fine-tune keeps its parent's input transform "
                f"(leave preprocessing out to inherit it)",
                field=f"preprocessing.{name}",
            )
    return config


def _ensure_output_model(caller: Caller, registry: ModelRegistry, name: str, arch: str) -> None:
    try:
        registry.get_model(caller, name, Permission.WRITE)
    except NotFound:
        try:
            registry.create_model(caller, name, task=None, description=f"trained {arch}")
        except Conflict as exc:
            raise InvalidInput(f"output_model: '{name}' belongs to someone else") from exc


def _num_classes(y: Any) -> int | None:
    if y.ndim != 1 or len(y) == 0:
        return None
    if y.dtype.kind in "OUS":
        return len({str(v) for v in y})
    if y.dtype.kind in "biuf":
        return int(np.max(y)) + 1
    return None
