"""Data sets: the list (pages) and one data set's schema, first rows and lineage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from modelyard.datasets.preview import preview_rows
from modelyard.storage.staging import scratch_dir
from modelyard.ui.render import pager
from modelyard.ui.routing import UiDep, UiRoute
from modelyard.ui.sessions import PATH

router = APIRouter(prefix=f"{PATH}/datasets", route_class=UiRoute, include_in_schema=False)

PageNo = Annotated[int, Query(ge=1, le=10**9)]
Search = Annotated[str | None, Query(max_length=128)]
PREVIEW_ROWS = 10


@router.get("")
def datasets_page(ui: UiDep, q: Search = None, page: PageNo = 1, size: int = 25) -> Response:
    pages = pager(ui.request, page, size, q=q)
    rows, total = ui.platform.datasets.list_datasets(ui.caller, pages.size, pages.offset, q)
    return ui.page("datasets.html", datasets=rows, pager=pages.with_total(total), q=q)


@router.get("/{name}")
async def dataset_page(ui: UiDep, name: str) -> Response:
    row = await run_in_threadpool(ui.platform.datasets.get, ui.caller, name)

    def preview() -> tuple[list[str], list[list[str]]]:
        with scratch_dir(ui.platform.settings.tmp_dir, "preview-") as work:
            files = ui.platform.datasets.canonical_files(row, work)
            return preview_rows(files, PREVIEW_ROWS)

    columns, first = await run_in_threadpool(preview)
    trained = await run_in_threadpool(
        ui.platform.registry.versions_trained_on, ui.caller, row.id, 50
    )
    return ui.page("dataset.html", dataset=row, columns=columns, rows=first, trained=trained)
