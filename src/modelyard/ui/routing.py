"""What every dashboard route shares: its route class (errors become pages) and its context."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from modelyard.api.deps import caller_of
from modelyard.auth.access import Caller
from modelyard.errors import InvalidInput, ModelyardError
from modelyard.platform import Platform
from modelyard.ui.render import Renderer
from modelyard.ui.sessions import Sessions

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class UiRoute(APIRoute):
    """A dashboard route: a refusal or a bad parameter is answered with a page, not JSON."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except ModelyardError as exc:
                return _renderer(request).error(request, exc)
            except RequestValidationError as exc:
                detail = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg', '')}"
                    for e in exc.errors()
                )
                return _renderer(request).error(request, InvalidInput(detail or "bad request"))

        return handle


def _renderer(request: Request) -> Renderer:
    renderer: Renderer = request.app.state.ui_renderer
    return renderer


@dataclass
class Ui:
    """One dashboard request: the platform, the page renderer and the signed-in caller."""

    request: Request
    platform: Platform
    render: Renderer
    sessions: Sessions

    @property
    def caller(self) -> Caller:
        """The caller the gate admitted by its session cookie."""
        return caller_of(self.request.scope)

    def page(self, template: str, **context: Any) -> Response:
        return self.render.page(self.request, template, **context)

    async def form(self) -> FormData:
        """The posted form, once its CSRF token is checked (403 otherwise)."""
        form = await self.request.form()
        self.sessions.check_csrf(self.request, form)
        return form


async def get_ui(request: Request) -> Ui:
    state = request.app.state
    return Ui(request, state.platform, state.ui_renderer, state.ui_sessions)


UiDep = Annotated[Ui, Depends(get_ui)]


def see_other(url: str) -> RedirectResponse:
    """After a form: go to ``url`` (303, so a reload does not post again)."""
    return RedirectResponse(url, status_code=303)


__all__ = ["Ui", "UiDep", "UiRoute", "get_ui", "see_other"]
