"""API keys: the caller's keys (pages), issuing one (its secret shown once), revoking one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from modelyard.auth.access import Scope
from modelyard.auth.service import ALL_SCOPES
from modelyard.errors import InvalidInput
from modelyard.ui.render import pager
from modelyard.ui.routing import Ui, UiDep, UiRoute, see_other
from modelyard.ui.sessions import PATH

router = APIRouter(prefix=f"{PATH}/keys", route_class=UiRoute, include_in_schema=False)

PageNo = Annotated[int, Query(ge=1, le=10**9)]


def _keys_page(ui: Ui, page: int, size: int, secret: str | None = None) -> Response:
    pages = pager(ui.request, page, size)
    rows = ui.platform.auth.list_keys(ui.caller)
    shown = rows[pages.offset : pages.offset + pages.size]
    return ui.page(
        "keys.html",
        keys=shown,
        pager=pages.with_total(len(rows)),
        scopes=[s for s in ALL_SCOPES if ui.caller.has(Scope(s))],
        secret=secret,
    )


@router.get("")
def keys_page(ui: UiDep, page: PageNo = 1, size: int = 25) -> Response:
    return _keys_page(ui, page, size)


@router.post("")
async def create_key(ui: UiDep) -> Response:
    form = await ui.form()
    name = str(form.get("name") or "").strip()
    if not name or len(name) > 128:
        raise InvalidInput("name: give the key a name of 1 to 128 characters")
    scopes = [str(s) for s in form.getlist("scopes")]
    new = await run_in_threadpool(ui.platform.auth.create_key, ui.caller, name, scopes)
    return _keys_page(ui, 1, 25, secret=new.secret)


@router.post("/{key_id}/revoke")
async def revoke_key(ui: UiDep, key_id: str) -> Response:
    await ui.form()
    await run_in_threadpool(ui.platform.auth.revoke_key, ui.caller, key_id)
    return see_other(f"{PATH}/keys")
