"""Planning an explain job: global feature importance of a version over a data set.

The caller must be able to read the version and the data set, and to change the model (the
result is stored on the version). The data set's rows must fit the version's input.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from modelyard.auth.access import Caller, Permission
from modelyard.datasets.service import DatasetService
from modelyard.errors import InvalidInput
from modelyard.jobs.explain.request import ExplainRequest
from modelyard.jobs.planner import Planner, parse_request, pinned
from modelyard.jobs.plans import JobPlan, PinnedVersion
from modelyard.registry.service import ModelRegistry

GRADIENT_METHODS = ("integrated_gradients", "saliency")


class ExplainPlan(JobPlan):
    """An explain job: which version, which rows, which method and its effort."""

    type: Literal["explain"] = "explain"
    source: PinnedVersion
    dataset: str
    dataset_id: str
    label: str | None
    method: str
    rows: int
    n_steps: int | None = None
    n_samples: int | None = None
    window: int | None = None
    seed: int = 0


def plan_explain(
    caller: Caller,
    body: Mapping[str, Any],
    datasets: DatasetService,
    registry: ModelRegistry,
    work: Path,
) -> ExplainPlan:
    """Validate an explain request and return the job's plan."""
    request = parse_request(ExplainRequest, body)
    planner = Planner(caller, datasets, registry, work)
    version = planner.version(request.source, "source")
    registry.get_model(caller, request.source.model, Permission.WRITE)
    if request.method in GRADIENT_METHODS and version.format != "safetensors":
        raise InvalidInput(
            f"method: {request.method} needs the gradients of a catalog (torch) version; "
            f"this one is {version.format}. Use occlusion or kernel_shap",
            field="method",
        )
    row = planner.dataset(request.dataset, "dataset")
    label = request.label or row.label
    x, y = planner.rows(row, label, "dataset", version)
    planner.check_rows(version, x, y, "dataset")
    return ExplainPlan(
        source=pinned(version, request.source.model),
        dataset=row.name,
        dataset_id=row.id,
        label=label,
        method=request.method,
        rows=min(request.rows, len(x)),
        n_steps=request.n_steps,
        n_samples=request.n_samples,
        window=request.window,
        seed=request.seed,
        request=dict(body),
    )
