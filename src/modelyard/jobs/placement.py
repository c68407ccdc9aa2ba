"""Where a job's work runs, decided by the executor that claims the job, never by the job.

``local``: in the job's worker process alone. ``ddp``: a distributed job's ranks under
PyTorch's elastic agent on the worker's machine (the local executor). ``ray``: a distributed
job's nodes reserved on a Ray cluster, one elastic agent on each (the Ray executor). Each kind
names its runner for every placement it supports (:mod:`modelyard.jobs.kinds`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

Placement: TypeAlias = Literal["local", "ddp", "ray"]


def placement_for(spec: Mapping[str, Any], distributed: Placement) -> Placement:
    """``distributed`` (how this executor spreads a job) for a stored plan with a
    ``distributed`` section, else ``local``."""
    return distributed if spec.get("distributed") else "local"
