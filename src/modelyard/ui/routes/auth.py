"""Signing in with an API key, signing out, and the dashboard's static files."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from modelyard.errors import NotFound, Unauthenticated
from modelyard.ui.routing import UiDep, UiRoute, see_other
from modelyard.ui.sessions import (
    COOKIE,
    CSRF_FIELD,
    LOGIN_COOKIE,
    PATH,
    SESSION_KEY,
    safe_next,
)

router = APIRouter(prefix=PATH, route_class=UiRoute, include_in_schema=False)

ASSETS = Path(__file__).parent.parent / "static"
MEDIA_TYPES = {
    "htmx.min.js": "text/javascript",
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "app.js": "text/javascript",
    "app.css": "text/css",
}
"""The files pages load, and their media types; nothing else is served."""


@router.get("/static/{file}")
def asset(file: str) -> FileResponse:
    media_type = MEDIA_TYPES.get(file)
    if media_type is None:
        raise NotFound(f"no dashboard asset named {file!r}")
    return FileResponse(
        ASSETS / file,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


def _signin_page(ui: UiDep, target: str, error: str | None, status: int = 200) -> Response:
    nonce = secrets.token_hex(16)
    response = ui.render.page(
        ui.request,
        "login.html",
        status_code=status,
        signin_csrf=ui.sessions.signin_token(nonce),
        next=target,
        error=error,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=3600,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=ui.request.url.scheme == "https",
    )
    return response


@router.get("/login")
def login_page(ui: UiDep, next: Annotated[str | None, Query(max_length=2000)] = None) -> Response:
    return _signin_page(ui, safe_next(next), None)


@router.post("/login")
async def login(ui: UiDep) -> Response:
    form = await ui.request.form()
    target = safe_next(str(form.get("next") or ""))
    nonce = ui.request.cookies.get(LOGIN_COOKIE, "")
    sent = str(form.get(CSRF_FIELD) or "")
    if not nonce or not secrets.compare_digest(sent, ui.sessions.signin_token(nonce)):
        return _signin_page(ui, target, "The form expired; please sign in again.", 403)
    key = str(form.get("key") or "").strip()
    try:
        caller = await run_in_threadpool(ui.platform.auth.authenticate, key)
    except Unauthenticated:
        return _signin_page(ui, target, "That API key is invalid, expired or revoked.", 401)
    session, cookie = ui.sessions.issue(key, caller)
    response = see_other(target)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=max(1, int(session.expires - time.time())),
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=ui.request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_COOKIE, path=PATH)
    return response


@router.post("/logout")
async def logout(ui: UiDep) -> Response:
    await ui.form()
    session = ui.request.scope.get(SESSION_KEY)
    if session is not None:
        ui.sessions.end(session)
    response = see_other(f"{PATH}/login")
    response.delete_cookie(COOKIE, path=PATH)
    return response
