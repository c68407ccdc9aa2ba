"""Limits of keys and projects, and projects' budgets: read and changed at run time.

``PUT`` replaces the whole document; a field left out or null is no limit. Limits of a key
are set by an admin or by an owner of the project the key is bound to; limits and budgets of
a project by an admin or the project's owners. Every server sharing the database applies a
change within ``MODELYARD_LIMITS_CACHE_S`` seconds (this one at once).
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from modelyard.api.deps import CallerDep, PlatformDep
from modelyard.auth.access import Caller
from modelyard.auth.projects import project_by_name, require_owner
from modelyard.db.tables import ApiKey, Project, UsageLimit
from modelyard.errors import Forbidden, NotFound
from modelyard.platform import Platform
from modelyard.usage.limits import ALL

router = APIRouter(prefix="/api/v1", tags=["limits and budgets"])

PerMinute = Field(default=None, ge=0, le=2**53)


class RateLimits(BaseModel):
    """Requests and tokens per minute (prompt + ``max_tokens`` up front, corrected when the
    reply ends); null: no limit."""

    # JSON numbers only: "5", 5.0 or true are refused rather than read as 5 or 1.
    model_config = ConfigDict(extra="forbid", strict=True)

    requests_per_minute: int | None = PerMinute
    tokens_per_minute: int | None = PerMinute


class Limits(RateLimits):
    """Every limit of one key or project; per-deployment request and token limits apply on
    top of those for all deployments (the stricter wins)."""

    running_jobs: int | None = Field(
        default=None, ge=0, le=100_000, description="Jobs queued or running at once."
    )
    cpu_seconds_per_day: int | None = PerMinute
    gpu_seconds_per_day: int | None = PerMinute
    cpu_seconds_per_month: int | None = PerMinute
    gpu_seconds_per_month: int | None = PerMinute
    stored_bytes: int | None = PerMinute
    deployments: dict[str, RateLimits] = Field(
        default_factory=dict, description="Request and token limits on one deployment."
    )


class LimitsOut(Limits):
    scope: str = Field(description="'key' or 'project'.")
    id: str = Field(description="The key's or the project's id.")


class BudgetIn(BaseModel):
    """A project's monthly budget, in the price table's currency."""

    model_config = ConfigDict(extra="forbid")

    soft_usd: float | None = Field(
        default=None, ge=0, description="Past this, answers carry x-modelyard-budget."
    )
    hard_usd: float | None = Field(
        default=None, ge=0, description="Past this, requests and jobs are refused (402)."
    )


class BudgetOut(BudgetIn):
    project_id: str
    currency: str
    spent_usd: float = Field(description="Spent this month (as of the last usage write).")
    period_start: int
    period_end: int


_COLUMNS = (
    "running_jobs",
    "cpu_seconds_per_day",
    "gpu_seconds_per_day",
    "cpu_seconds_per_month",
    "gpu_seconds_per_month",
    "stored_bytes",
)


def _document(scope: str, subject: str, rows: list[UsageLimit]) -> LimitsOut:
    out = LimitsOut(scope=scope, id=subject)
    for row in rows:
        rates = RateLimits(
            requests_per_minute=row.requests_per_minute, tokens_per_minute=row.tokens_per_minute
        )
        if row.deployment == ALL:
            out.requests_per_minute = rates.requests_per_minute
            out.tokens_per_minute = rates.tokens_per_minute
            for name in _COLUMNS:
                setattr(out, name, getattr(row, name))
        else:
            out.deployments[row.deployment] = rates
    return out


def _rows(body: Limits) -> dict[str, dict[str, int | None]]:
    rows: dict[str, dict[str, int | None]] = {
        ALL: {
            "requests_per_minute": body.requests_per_minute,
            "tokens_per_minute": body.tokens_per_minute,
            **{name: getattr(body, name) for name in _COLUMNS},
        }
    }
    for deployment, rates in body.deployments.items():
        rows[deployment] = rates.model_dump()
    return rows


def _key_subject(platform: Platform, caller: Caller, key_id: str, change: bool) -> str:
    """The key's id if the caller may see (and, with ``change``, set) its limits."""
    with platform.db.session() as session:
        key = session.get(ApiKey, key_id)
        if key is None:
            raise NotFound(f"no API key with id '{key_id}'")
        if caller.acts_as_admin:
            return key.id
        own = key.principal_id == caller.principal_id
        project_id = key.project_id
        project = session.get(Project, project_id) if project_id else None
        if project is not None:
            try:
                require_owner(session, caller, project)
                return key.id
            except Forbidden:
                pass
        if own and not change:
            return key.id
        if own or project is not None:
            raise Forbidden("only an admin or an owner of the key's project can set its limits")
        raise NotFound(f"no API key with id '{key_id}'")


def _project_subject(platform: Platform, caller: Caller, name: str, change: bool) -> str:
    """The project's id if the caller may see (and, with ``change``, set) its limits."""
    with platform.db.session() as session:
        project = project_by_name(session, caller, name)
        if change:
            require_owner(session, caller, project)
        return project.id


@router.get("/limits/keys/{key_id}", response_model=LimitsOut, summary="A key's limits")
def get_key_limits(key_id: str, platform: PlatformDep, caller: CallerDep) -> LimitsOut:
    subject = _key_subject(platform, caller, key_id, change=False)
    return _document("key", subject, platform.usage.limits_of("key", subject))


@router.put("/limits/keys/{key_id}", response_model=LimitsOut, summary="Set a key's limits")
def put_key_limits(
    key_id: str, body: Limits, platform: PlatformDep, caller: CallerDep
) -> LimitsOut:
    subject = _key_subject(platform, caller, key_id, change=True)
    rows = platform.usage.replace_limits(caller, "key", subject, _rows(body))
    return _document("key", subject, rows)


@router.delete("/limits/keys/{key_id}", status_code=204, summary="Remove a key's limits")
def delete_key_limits(key_id: str, platform: PlatformDep, caller: CallerDep) -> Response:
    subject = _key_subject(platform, caller, key_id, change=True)
    platform.usage.clear_limits(caller, "key", subject)
    return Response(status_code=204)


@router.get("/limits/projects/{project}", response_model=LimitsOut, summary="A project's limits")
def get_project_limits(project: str, platform: PlatformDep, caller: CallerDep) -> LimitsOut:
    subject = _project_subject(platform, caller, project, change=False)
    return _document("project", subject, platform.usage.limits_of("project", subject))


@router.put(
    "/limits/projects/{project}", response_model=LimitsOut, summary="Set a project's limits"
)
def put_project_limits(
    project: str, body: Limits, platform: PlatformDep, caller: CallerDep
) -> LimitsOut:
    subject = _project_subject(platform, caller, project, change=True)
    rows = platform.usage.replace_limits(caller, "project", subject, _rows(body))
    return _document("project", subject, rows)


@router.delete("/limits/projects/{project}", status_code=204, summary="Remove a project's limits")
def delete_project_limits(project: str, platform: PlatformDep, caller: CallerDep) -> Response:
    subject = _project_subject(platform, caller, project, change=True)
    platform.usage.clear_limits(caller, "project", subject)
    return Response(status_code=204)


async def _budget(platform: Platform, project_id: str) -> BudgetOut:
    budget, spent = await run_in_threadpool(platform.usage.budget_of, project_id)
    start, end = platform.usage.period(time.time())
    return BudgetOut(
        project_id=project_id,
        soft_usd=budget.soft_usd if budget else None,
        hard_usd=budget.hard_usd if budget else None,
        currency=platform.usage.prices.currency,
        spent_usd=round(spent, 6),
        period_start=start,
        period_end=end,
    )


@router.get("/budgets/{project}", response_model=BudgetOut, summary="A project's budget")
async def get_budget(project: str, platform: PlatformDep, caller: CallerDep) -> BudgetOut:
    subject = await run_in_threadpool(_project_subject, platform, caller, project, False)
    return await _budget(platform, subject)


@router.put("/budgets/{project}", response_model=BudgetOut, summary="Set a project's budget")
async def put_budget(
    project: str, body: BudgetIn, platform: PlatformDep, caller: CallerDep
) -> BudgetOut:
    subject = await run_in_threadpool(_project_subject, platform, caller, project, True)
    await run_in_threadpool(
        platform.usage.set_budget, caller, subject, body.soft_usd, body.hard_usd
    )
    return await _budget(platform, subject)


@router.delete("/budgets/{project}", status_code=204, summary="Remove a project's budget")
async def delete_budget(project: str, platform: PlatformDep, caller: CallerDep) -> Response:
    subject = await run_in_threadpool(_project_subject, platform, caller, project, True)
    await run_in_threadpool(platform.usage.clear_budget, caller, subject)
    return Response(status_code=204)
