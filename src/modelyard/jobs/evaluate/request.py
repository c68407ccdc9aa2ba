"""What an evaluate job takes: a version and the data set it is measured on."""

from __future__ import annotations

from typing import Literal

from modelyard.jobs.request_base import RequestModel, VersionRef
from modelyard.jobs.resources import JobResources


class EvaluateRequest(RequestModel):
    """Evaluate a version on a data set: ``{"type": "evaluate", "source": {...},
    "eval_dataset": ...}``."""

    type: Literal["evaluate"]
    source: VersionRef
    eval_dataset: str
    label: str | None = None
    resources: JobResources | None = None
