"""Where jobs run: the executor's kind, its slots, its running jobs and, on Ray, the nodes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from modelyard.api.deps import CallerDep, PlatformDep

router = APIRouter(prefix="/api/v1", tags=["jobs"])


@router.get("/executor", summary="The job executor and, on a Ray cluster, its nodes (admin)")
def describe_executor(platform: PlatformDep, caller: CallerDep) -> dict[str, Any]:
    caller.require_admin()
    return platform.executor.describe()
