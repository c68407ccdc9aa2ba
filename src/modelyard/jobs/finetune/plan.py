"""The plan of a finetune job: a :class:`~modelyard.jobs.compress.plan.SourcePlan` whose method
is ``finetune``, with a private run's noise and (ε, δ) when it asks for privacy."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelyard.auth.access import Caller
from modelyard.compression.methods import parse_method
from modelyard.datasets.service import DatasetService
from modelyard.errors import InvalidInput
from modelyard.jobs.compress.plan import SourcePlan, plan_source_job
from modelyard.jobs.finetune.request import FineTuneRequest
from modelyard.jobs.planner import Planner, parse_request
from modelyard.nn.specs import parse_spec
from modelyard.registry.service import ModelRegistry


def plan_finetune(
    caller: Caller,
    body: Mapping[str, Any],
    datasets: DatasetService,
    registry: ModelRegistry,
    work: Path,
) -> SourcePlan:
    """Validate a finetune request (catalog or Keras source) and return the job's plan."""
    request = parse_request(FineTuneRequest, body)
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
    planner = Planner(caller, datasets, registry, work)
    plan = plan_source_job(planner, request, method, request.dataset, body)
    if request.privacy is None:
        return plan
    return plan.model_copy(update={"privacy": _plan_private_finetune(planner, request)})


def _plan_private_finetune(planner: Planner, request: FineTuneRequest) -> dict[str, Any]:
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
