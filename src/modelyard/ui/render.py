"""Rendering dashboard pages: the Jinja2 environment (autoescaped), security headers, pages.

Every page is rendered with the signed-in caller, its CSRF token and the navigation; every
response carries a Content-Security-Policy that runs only the package's own scripts, so even
text that escaped escaping could not run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from modelyard.api.gate import CALLER_KEY
from modelyard.auth.access import Caller
from modelyard.errors import ModelyardError, without_paths
from modelyard.ui.sessions import SESSION_KEY, Sessions

TEMPLATES = Path(__file__).parent / "templates"
PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = PAGE_SIZES[-1]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _size(value: int | float | None) -> str:
    if value is None:
        return "—"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(amount) < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _day(value: int) -> str:
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d")


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def environment() -> jinja2.Environment:
    """The templates' environment: every value is HTML-escaped unless a template says not."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["size"] = _size
    env.filters["when"] = _when
    env.filters["num"] = _num
    env.filters["day"] = _day
    return env


@dataclass(frozen=True)
class Pager:
    """One page of a list: which rows, how many in all, and links to the others."""

    page: int
    size: int
    total: int
    base: str
    params: dict[str, str]

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.size))

    def url(self, page: int) -> str:
        query = {k: v for k, v in self.params.items() if v}
        query.update(page=str(page), size=str(self.size))
        return f"{self.base}?{urlencode(query)}"

    def with_total(self, total: int) -> Pager:
        return Pager(self.page, self.size, total, self.base, self.params)


def pager(request: Request, page: int, size: int, **params: str | None) -> Pager:
    """The pager of a list page (``size`` clamped to the page sizes offered)."""
    size = size if size in PAGE_SIZES else DEFAULT_PAGE_SIZE
    kept = {k: v for k, v in params.items() if v}
    return Pager(page, size, 0, request.url.path, kept)


class Renderer:
    """Renders templates with what every page shows."""

    def __init__(self, sessions: Sessions, private_roots: tuple[str, ...]) -> None:
        self.env = environment()
        self.sessions = sessions
        self._roots = private_roots

    def page(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        caller: Caller | None = request.scope.get(CALLER_KEY)
        session = request.scope.get(SESSION_KEY)
        csrf = self.sessions.csrf_token(session) if session is not None else ""
        html = self.env.get_template(template).render(
            request=request, caller=caller, csrf=csrf, path=request.url.path, **context
        )
        return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)

    def error(self, request: Request, exc: ModelyardError) -> HTMLResponse:
        """An error as a page: its status, title and detail (naming no server file)."""
        return self.page(
            request,
            "error.html",
            status_code=exc.status,
            title=exc.title,
            detail=without_paths(exc.detail, self._roots),
        )


__all__ = ["MAX_PAGE_SIZE", "PAGE_SIZES", "SECURITY_HEADERS", "Pager", "Renderer", "pager"]
