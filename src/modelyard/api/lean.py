"""Routes on the inference hot path: documented like any route, called without FastAPI's
per-request machinery.

For a cheap model, FastAPI's work around the endpoint (solving the dependency graph,
reading and validating the body in Python, validating and serializing the answer) costs more
of the event loop than the inference itself. A lean endpoint is declared as usual, so the
OpenAPI document, the access policy and the gate see an ordinary route, and is called with
what it declares found directly::

    @lean_post(router, "/models/{model}/infer", summary="Inference")
    async def infer(model: str, request: Request, platform: PlatformDep, caller: CallerDep)
        -> Response: ...

It may declare the :class:`~starlette.requests.Request`, ``PlatformDep``, ``CallerDep`` (the
caller the gate authenticated), path parameters and one pydantic body, validated straight
from the JSON bytes in pydantic's Rust parser; it returns a :class:`Response`. A request the
lean path would not take exactly as FastAPI does (a body that does not validate, no JSON
content type, an empty body) goes through FastAPI's own handler, so every error keeps the
shape and wording it has elsewhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pydantic_core
from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.deps import caller_of, get_caller, get_platform

Endpoint = TypeVar("Endpoint", bound=Callable[..., Awaitable[Response]])
Handler = Callable[[Request], Coroutine[Any, Any, Response]]

_JSON = b"application/json"


def _platform(request: Request) -> Any:
    return request.app.state.platform


def _caller(request: Request) -> Any:
    return caller_of(request.scope)


_DEPENDENCIES: dict[Any, Callable[[Request], Any]] = {
    get_platform: _platform,
    get_caller: _caller,
}


class LeanRoute(APIRoute):
    """An :class:`APIRoute` whose endpoint gets its arguments without FastAPI's solver."""

    def get_route_handler(self) -> Handler:
        full = super().get_route_handler()
        endpoint = self.endpoint
        dependant = self.dependant
        where = f"lean route {self.path}"
        if dependant.query_params or dependant.header_params or dependant.cookie_params:
            raise TypeError(f"{where}: only path parameters are supported")
        given: list[tuple[str, Callable[[Request], Any]]] = []
        if dependant.request_param_name is not None:
            given.append((dependant.request_param_name, lambda request: request))
        for dependency in dependant.dependencies:
            resolve = _DEPENDENCIES.get(dependency.call)
            if resolve is None or dependency.name is None:
                raise TypeError(f"{where}: unsupported dependency {dependency.call!r}")
            given.append((dependency.name, resolve))
        path_names = [field.name for field in dependant.path_params]
        body: tuple[str, type[BaseModel]] | None = None
        if dependant.body_params:
            if self._embed_body_fields or len(dependant.body_params) != 1:
                raise TypeError(f"{where}: the body must be one pydantic model, not embedded")
            (field,) = dependant.body_params
            model = field.field_info.annotation
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise TypeError(f"{where}: the body must be one pydantic model")
            body = (field.name, model)

        async def handler(request: Request) -> Response:
            values = {name: resolve(request) for name, resolve in given}
            path = request.path_params
            for name in path_names:
                values[name] = path[name]
            if body is not None:
                raw = await request.body()
                if not raw or not _is_json(request):
                    return await full(request)
                try:
                    values[body[0]] = body[1].model_validate_json(raw)
                except ValidationError:
                    return await full(request)
            response: Response = await endpoint(**values)
            return response

        return handler


def _is_json(request: Request) -> bool:
    headers: list[tuple[bytes, bytes]] = request.scope["headers"]
    for name, value in headers:
        if name == b"content-type":
            return value == _JSON or value.startswith(_JSON + b";")
    return False


def json_response(content: Any, status_code: int = 200) -> Response:
    """``content`` (plain dicts, lists, strings and numbers) as a JSON answer, written by
    pydantic's serializer: the standard library's is several times slower on long lists of
    floats. Non-finite floats are written as ``null``, as a response model would write them."""
    body = pydantic_core.to_json(content, inf_nan_mode="null")
    return Response(body, status_code=status_code, media_type="application/json")


def lean_post(router: APIRouter, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
    """``@router.post(path, **options)``, with the endpoint served by a :class:`LeanRoute`."""

    def register(endpoint: Endpoint) -> Endpoint:
        router.add_api_route(
            path, endpoint, methods=["POST"], route_class_override=LeanRoute, **options
        )
        return endpoint

    return register


__all__ = ["LeanRoute", "json_response", "lean_post"]
