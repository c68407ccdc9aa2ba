"""The plan of an evaluate job (:class:`EvaluatePlan`): one pinned version and the data set it
is measured on, checked to fit each other before the job is queued."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from modelyard.auth.access import Caller
from modelyard.datasets.service import DatasetService
from modelyard.jobs.evaluate.request import EvaluateRequest
from modelyard.jobs.planner import Planner, parse_request, pinned
from modelyard.jobs.plans import JobPlan, PinnedVersion
from modelyard.registry.service import ModelRegistry


class EvaluatePlan(JobPlan):
    """An evaluate job: one version's metrics on a data set."""

    type: Literal["evaluate"] = "evaluate"
    source: PinnedVersion
    eval_dataset: str
    eval_dataset_id: str
    label: str | None


def plan_evaluate(
    caller: Caller,
    body: Mapping[str, Any],
    datasets: DatasetService,
    registry: ModelRegistry,
    work: Path,
) -> EvaluatePlan:
    """Validate an evaluate request and return the job's plan."""
    request = parse_request(EvaluateRequest, body)
    planner = Planner(caller, datasets, registry, work)
    version = planner.version(request.source, "source")
    eval_row = planner.dataset(request.eval_dataset, "eval_dataset")
    label = request.label or eval_row.label
    x, y = planner.rows(eval_row, label, "eval_dataset", version)
    planner.check_rows(version, x, y, "eval_dataset")
    return EvaluatePlan(
        source=pinned(version, request.source.model),
        eval_dataset=eval_row.name,
        eval_dataset_id=eval_row.id,
        label=label,
        request=dict(body),
    )
