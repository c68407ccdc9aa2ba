"""``GET /api/v1/usage`` and ``GET /api/v1/costs``, in the shape of OpenAI's usage and costs
APIs: a page of buckets, each with one result per group.

An admin sees everyone's use; anyone else their own and that of the projects they own.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from modelyard.api.deps import INT64_MAX, CallerDep, PlatformDep
from modelyard.usage.report import GROUPS, Window, costs_page, parse_groups, usage_page

router = APIRouter(prefix="/api/v1", tags=["usage and costs"])

Start = Annotated[
    int, Query(ge=0, le=INT64_MAX, description="Start of the first bucket (unix seconds).")
]
End = Annotated[
    int | None, Query(ge=0, le=INT64_MAX, description="End (unix seconds, exclusive); now.")
]


def _names_pattern(names: Iterable[str]) -> str:
    """One of ``names``, or several joined by commas."""
    one = "|".join(names)
    return f"^({one})(,({one}))*$"


GroupBy = Annotated[
    list[Annotated[str, Field(pattern=_names_pattern(GROUPS))]],
    Query(description=f"Fields to group results by: {', '.join(GROUPS)} (repeat or comma)."),
]
CostGroupBy = Annotated[
    list[Annotated[str, Field(pattern=_names_pattern([*GROUPS, "line_item"]))]],
    Query(description="project, key, principal, model, deployment, kind, line_item."),
]
BucketWidth = Annotated[Literal["1m", "1h", "1d"], Query(description="1m, 1h or 1d.")]
# No NUL: the gate refuses it in any query (no database stores it).
Filter = Annotated[
    list[Annotated[str, Field(pattern="^[^\x00]*$")]],
    Query(description="Only these (repeat or comma)."),
]


def _filters(**given: list[str]) -> dict[str, list[str]]:
    return {
        name: [v for raw in values for v in raw.split(",") if v]
        for name, values in given.items()
        if values
    }


@router.get("/usage", summary="Usage in time buckets (OpenAI's usage API shape)")
async def get_usage(
    platform: PlatformDep,
    caller: CallerDep,
    start: Start,
    end: End = None,
    bucket_width: BucketWidth = "1d",
    group_by: GroupBy = [],  # noqa: B006
    project_ids: Filter = [],  # noqa: B006
    api_key_ids: Filter = [],  # noqa: B006
    deployments: Filter = [],  # noqa: B006
    kinds: Filter = [],  # noqa: B006
) -> dict[str, Any]:
    window = Window.parse(start, end, bucket_width)
    groups = parse_groups(group_by)
    filters = _filters(project=project_ids, key=api_key_ids, deployment=deployments, kind=kinds)
    return await run_in_threadpool(usage_page, platform.db, caller, window, groups, filters)


@router.get("/costs", summary="Costs in time buckets from the price table (OpenAI's shape)")
async def get_costs(
    platform: PlatformDep,
    caller: CallerDep,
    start: Start,
    end: End = None,
    bucket_width: BucketWidth = "1d",
    group_by: CostGroupBy = [],  # noqa: B006
    project_ids: Filter = [],  # noqa: B006
) -> dict[str, Any]:
    window = Window.parse(start, end if end is not None else int(time.time()) + 1, bucket_width)
    wanted = [g for raw in group_by for g in raw.split(",") if g.strip()]
    by_line_item = "line_item" in wanted
    groups = parse_groups([g for g in wanted if g != "line_item"])
    filters = _filters(project=project_ids)
    return await run_in_threadpool(
        costs_page,
        platform.db,
        caller,
        platform.usage.prices,
        window,
        groups,
        by_line_item,
        filters,
    )
