"""Planning a language-model fine-tuning job (type ``llm_finetune``).

The request names a registered ``hf`` causal LM, a training file (a JSONL data set, as
``/v1/files`` stores them) and optionally a validation file; both are checked example by
example before the job is queued. ``"auto"`` hyperparameters are resolved here, so the
stored spec says exactly what will run::

    {"type": "llm_finetune", "model": {"from": "tiny", "version": "latest"},
     "training_file": "file-…", "suffix": "demo", "method": "lora",
     "hyperparameters": {"n_epochs": 3, "batch_size": "auto"}}
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelyard.auth.access import Caller, Permission
from modelyard.datasets.service import DatasetService
from modelyard.db.tables import Dataset
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.jobs.plans import LlmFineTunePlan
from modelyard.llm.data import parse_examples
from modelyard.llm.finetune import resolve_hyperparameters
from modelyard.registry.service import ModelRegistry

METHODS = ("full", "lora")
_SUFFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")


def plan_llm_finetune(
    caller: Caller,
    body: Mapping[str, Any],
    datasets: DatasetService,
    registry: ModelRegistry,
    work: Path,
) -> dict[str, Any]:
    """Validate a fine-tuning request and return the job's stored spec."""
    model = body.get("model")
    if not isinstance(model, Mapping) or not isinstance(model.get("from"), str):
        raise InvalidInput("model: give {'from': '<model>', 'version': '<n or alias>'}")
    ref = str(model.get("version", "latest"))
    try:
        version = registry.get_version(caller, model["from"], ref)
    except NotFound as exc:
        raise InvalidInput(f"model: {exc.detail}", field="model") from exc
    if version.format != "hf" or (version.spec or {}).get("kind") != "causal_lm":
        raise InvalidInput(
            f"model: version {version.version} of '{model['from']}' is not a causal language "
            "model (format 'hf'); only those can be fine-tuned here",
            field="model",
        )
    train_row, train_count = _examples(caller, datasets, body.get("training_file"), "training_file")
    valid_row = None
    if body.get("validation_file") is not None:
        valid_row, _ = _examples(caller, datasets, body["validation_file"], "validation_file")
    method = body.get("method", "full")
    if method not in METHODS:
        raise InvalidInput(f"method: must be one of {', '.join(METHODS)}", field="method")
    hyper = _hyperparameters(body.get("hyperparameters") or {}, train_count)
    lora = dict(body.get("lora") or {})
    suffix = body.get("suffix") or "modelyard"
    if not isinstance(suffix, str) or not _SUFFIX.match(suffix):
        raise InvalidInput(
            "suffix: 1 to 40 letters, digits, '.', '_' or '-', starting with a letter or digit",
            field="suffix",
        )
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise InvalidInput("seed: must be an integer", field="seed")
    base_id = str(body.get("base_model_id") or model["from"])
    short = uuid.uuid4().hex[:8]
    fine_tuned = f"ft:{base_id}:{suffix}:{short}"
    output = fine_tuned.replace(":", "-")[:128]
    _ensure_output_model(caller, registry, output, base_id)
    plan = {
        "type": "llm_finetune",
        "base": {
            "model": model["from"],
            "version": version.version,
            "sha256": version.sha256,
            "model_id": base_id,
        },
        "training_file": train_row.name,
        "training_dataset_id": train_row.id,
        "training_sha256": train_row.originals["file"]["sha256"],
        "validation_file": valid_row.name if valid_row else None,
        "validation_sha256": valid_row.originals["file"]["sha256"] if valid_row else None,
        "method": method,
        "hyperparameters": hyper,
        "lora": {
            "r": int(lora.get("r", 8)),
            "alpha": int(lora.get("alpha", 16)),
            "dropout": float(lora.get("dropout", 0.0)),
            "merge": bool(lora.get("merge", False)),
        },
        "seed": seed if seed is not None else 0,
        "suffix": suffix,
        "output_model": output,
        "fine_tuned_model": fine_tuned,
        "deployment": output,
        "request": dict(body),
    }
    return LlmFineTunePlan.model_validate(plan).model_dump(mode="json")


def _examples(
    caller: Caller, datasets: DatasetService, name: Any, field: str
) -> tuple[Dataset, int]:
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{field}: name an uploaded file", field=field)
    try:
        row = datasets.get(caller, name)
    except NotFound as exc:
        raise InvalidInput(f"{field}: {exc.detail}", field=field) from exc
    if row.format != "jsonl" or "file" not in row.originals:
        raise InvalidInput(f"{field}: '{name}' is not a JSONL file", field=field)
    _row, chunks, _name = datasets.download(caller, name)
    try:
        examples = parse_examples(b"".join(chunks))
    except InvalidInput as exc:
        raise InvalidInput(f"{field}: {exc.detail}", field=field) from exc
    return row, len(examples)


def _hyperparameters(raw: Any, n_examples: int) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidInput("hyperparameters: must be an object", field="hyperparameters")
    checks = {"n_epochs": (0, 50), "batch_size": (0, 256), "learning_rate_multiplier": (0, 1e4)}
    for key, value in raw.items():
        if key not in checks:
            raise InvalidInput(f"hyperparameters.{key}: unknown", field=f"hyperparameters.{key}")
        low, high = checks[key]
        if value != "auto" and (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not low < value <= high
            or (key != "learning_rate_multiplier" and not isinstance(value, int))
        ):
            raise InvalidInput(
                f"hyperparameters.{key}: 'auto' or a number in ({low}, {high}]",
                field=f"hyperparameters.{key}",
            )
    return resolve_hyperparameters(dict(raw), n_examples)


def _ensure_output_model(caller: Caller, registry: ModelRegistry, name: str, base: str) -> None:
    try:
        registry.get_model(caller, name, Permission.WRITE)
    except NotFound:
        try:
            registry.create_model(
                caller, name, task="text-generation", description=f"fine-tuned from {base}"
            )
        except Conflict as exc:
            raise InvalidInput(f"suffix: the model '{name}' belongs to someone else") from exc
