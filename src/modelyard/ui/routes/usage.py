"""Usage per project and key, by day: the usage API's own report, for the session."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from modelyard.ui.routing import UiDep, UiRoute
from modelyard.ui.sessions import PATH
from modelyard.usage.report import Window, parse_groups, usage_page

router = APIRouter(prefix=f"{PATH}/usage", route_class=UiRoute, include_in_schema=False)

DAY = 86_400


@router.get("")
async def usage(ui: UiDep, days: Annotated[int, Query(ge=1, le=31)] = 7) -> Response:
    now = int(time.time())
    window = Window.parse(now - now % DAY - (days - 1) * DAY, now + 1, "1d")
    page = await run_in_threadpool(
        usage_page, ui.platform.db, ui.caller, window, parse_groups(["project", "key"]), {}
    )
    rows = [
        (bucket["start_time"], result)
        for bucket in reversed(page["data"])
        for result in bucket["results"]
    ]
    return ui.page("usage.html", rows=rows, days=days)
