"""Errors in OpenAI's shape for every path under ``/v1/``.

OpenAI clients read ``{"error": {"message", "type", "param", "code"}}``; the rest of the
server answers RFC 9457 problem+json. :func:`install` wraps the app's existing handlers so
that each request gets the shape its API speaks.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelyard.api.problems import error_headers
from modelyard.errors import InvalidInput, ModelyardError

PREFIX = "/v1/"
KSERVE_SUFFIX = ":explain"
"""KServe's v1 explain route shares the prefix; it answers problem+json like /api/v1."""
Handler = Callable[[Request, Exception], Awaitable[Response]]
_TYPES = {
    400: "invalid_request_error",
    402: "insufficient_quota",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "server_error",
    504: "timeout_error",
}


def openai_error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """One error response as OpenAI writes it."""
    body = {
        "error": {
            "message": message,
            "type": _TYPES.get(status, "server_error"),
            "param": param,
            "code": code,
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _from_modelyard(exc: ModelyardError) -> JSONResponse:
    status = exc.status
    # OpenAI answers 400 for a request it cannot take; 422 is this server's native code.
    if isinstance(exc, InvalidInput):
        status = 400
    headers: dict[str, str] = dict(exc.headers)
    if "retry_after" in exc.extra:
        headers["Retry-After"] = str(exc.extra["retry_after"])
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    param = exc.extra.get("param", exc.extra.get("field"))
    code = exc.extra.get("code")
    if code is None and status == 401:
        code = "invalid_api_key"
    return openai_error(
        status, exc.detail, param=param, code=code or exc.type_slug, headers=headers
    )


_NAMED = re.compile(r"^([A-Za-z_][\w.]*): (.*)$", re.DOTALL)


def _from_validation(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first: dict[str, Any] = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    param = ".".join(loc) or None
    parts = []
    for e in errors:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        text = str(e.get("msg", "")).removeprefix("Value error, ")
        if e.get("type") == "extra_forbidden":
            text = "is not supported by this server"
        named = _NAMED.match(text)
        if not where and named is not None:
            # A check across fields names the field it refuses at the start of its message.
            where, text = named.group(1), named.group(2)
            param = param or where
        parts.append(f"{where or 'body'}: {text}")
    message = "; ".join(parts)
    return openai_error(400, message or "invalid request", param=param, code="invalid_value")


def _wrap(cls: type[Exception], native: Handler | None) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        if not _openai_path(request.url.path):
            assert native is not None
            return await native(request, exc)
        if isinstance(exc, ModelyardError):
            return _from_modelyard(exc)
        if isinstance(exc, RequestValidationError):
            return _from_validation(exc)
        if isinstance(exc, StarletteHTTPException):
            code = "not_found" if exc.status_code == 404 else None
            headers = error_headers(request, exc)
            return openai_error(exc.status_code, str(exc.detail), code=code, headers=headers)
        if native is not None:
            await native(request, exc)  # logs the unexpected error
        return openai_error(500, "the server hit an unexpected error", code="internal_error")

    return handle


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "OpenAIError",
    "description": "An error as OpenAI's API answers it.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string", "examples": ["invalid_request_error"]},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


def _declare_errors(document: dict[str, Any]) -> dict[str, Any]:
    """On ``/v1/`` operations, declare errors in OpenAI's shape; malformed requests are 400."""
    document["components"]["schemas"]["OpenAIError"] = ERROR_SCHEMA
    schema = {"$ref": "#/components/schemas/OpenAIError"}
    for path, item in document["paths"].items():
        if not _openai_path(path):
            continue
        for operation in item.values():
            responses: dict[str, Any] = operation["responses"]
            if responses.pop("422", None) is not None:
                responses["400"] = {
                    "description": "The request is invalid; `param` names the input."
                }
            for code, response in responses.items():
                if int(code) >= 400:
                    response["content"] = {"application/json": {"schema": schema}}
    return document


def _openai_path(path: str) -> bool:
    return path.startswith(PREFIX) and not path.endswith(KSERVE_SUFFIX)


def install(app: FastAPI) -> None:
    """Answer errors on ``/v1/`` paths in OpenAI's shape, and document them so; other paths
    keep their handlers."""
    for cls in (ModelyardError, RequestValidationError, StarletteHTTPException, Exception):
        native: Any = app.exception_handlers.get(cls)
        app.add_exception_handler(cls, _wrap(cls, native))
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _declare_errors(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["install", "openai_error"]
