"""Errors as RFC 9457 problem+json responses."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelyard.api.schemas.common import Problem
from modelyard.api.schemas.jobs import declare_job_request
from modelyard.errors import ModelyardError

PROBLEM_BASE = "https://modelyard.dev/problems/"
MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("modelyard.api")


def problem(status: int, title: str, detail: str, slug: str, **extra: Any) -> JSONResponse:
    body = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}
    body.update(extra)
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _protocol_extra(request: Request, detail: str) -> dict[str, Any]:
    # Open Inference Protocol clients (tritonclient) read the message from "error".
    return {"error": detail} if request.url.path.startswith("/v2") else {}


async def _on_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ModelyardError)
    extra = {**exc.extra, **_protocol_extra(request, exc.detail)}
    response = problem(exc.status, exc.title, exc.detail, exc.type_slug, **extra)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": _field(e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
    return problem(
        422,
        "Invalid input",
        detail,
        "invalid-input",
        errors=errors,
        **_protocol_extra(request, detail),
    )


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    detail = str(exc.detail)
    response = problem(exc.status_code, detail, detail, slug, **_protocol_extra(request, detail))
    response.headers.update(error_headers(request, exc))
    return response


def error_headers(request: Request, exc: StarletteHTTPException) -> dict[str, str]:
    """The headers an HTTP error needs; a 405's Allow lists every method of the path.

    Starlette would name only the methods of the first route whose path matched, and FastAPI
    makes one route per method; the OpenAPI document has them all. Where several documented
    paths match (``/v1/models/{model}`` and ``/v1/models/{name}:explain`` both match
    ``/v1/models/m:explain``), the one with the most literal text is the path's own.
    """
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        paths: dict[str, dict[str, Any]] = request.app.openapi().get("paths", {})
        matched = [
            (len(_PLACEHOLDER.sub("", template)), item)
            for template, item in paths.items()
            if _template(template).fullmatch(request.url.path)
        ]
        best = max((literal for literal, _ in matched), default=0)
        methods = {m.upper() for literal, item in matched if literal == best for m in item}
        headers["Allow"] = ", ".join(sorted(methods))
    return headers


_PLACEHOLDER = re.compile(r"\{[^}]+\}")


def _template(path: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", path)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


async def _on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal error", "the server hit an unexpected error", "internal")


ERROR_DESCRIPTIONS = {
    400: "The request could not be read.",
    401: "No valid API key: send `Authorization: Bearer <key>`.",
    403: "The key lacks the scope, or the caller the permission.",
    404: "No such resource, or none the caller may read.",
    409: "The request conflicts with the current state (a name taken, a version in use).",
    402: "The project's hard budget is spent for this month.",
    413: "The body is larger than the server accepts.",
    415: "The body is in a format the server does not read.",
    422: "The input is invalid; `detail` (and `errors`, per field) say what is wrong.",
    429: (
        "Too busy for this caller now, or over a rate limit or quota: retry after "
        "`Retry-After` seconds (`x-ratelimit-*` say which limit)."
    ),
    503: "Not ready: a deployment still loading, or a store out of reach.",
    504: "The request's deadline passed before it was served.",
}
_WRITES = frozenset({"post", "put", "patch"})
_HEADERS = {
    401: {"WWW-Authenticate": {"description": "`Bearer`.", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}}},
}
_DEFAULT_422 = "#/components/schemas/HTTPValidationError"


def error_statuses(method: str, operation: dict[str, Any]) -> list[int]:
    """The error statuses an operation may answer: those of any authenticated call, and those
    of a request with parameters or a body."""
    codes: set[int] = set()
    if operation.get("parameters") or method in _WRITES:
        codes.add(422)
    if operation.get("security"):
        codes |= {400, 401, 403, 404, 422, 429, 503}
        if method in _WRITES:
            codes |= {409, 413, 415}
        if method == "delete":
            codes.add(409)
        if method == "post":
            codes.add(504)
    return sorted(codes)


def problem_response(status: int) -> dict[str, Any]:
    """The OpenAPI response object of a problem+json answer with ``status``."""
    response: dict[str, Any] = {
        "description": ERROR_DESCRIPTIONS.get(status, "An error."),
        "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status in _HEADERS:
        response["headers"] = _HEADERS[status]
    return response


def _needs_problem(response: dict[str, Any] | None) -> bool:
    if response is None or "content" not in response:
        return True
    schema = response["content"].get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref") == _DEFAULT_422)


def declare_problems(document: dict[str, Any]) -> dict[str, Any]:
    """Declare, on every operation of an OpenAPI document, the problem+json answers it may
    give, in place of FastAPI's default 422 (whose shape this server does not answer)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem_schema.pop("$defs", {}))
    schemas["Problem"] = problem_schema
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            declared = {int(code) for code in responses if code.isdigit() and int(code) >= 400}
            for status in sorted(declared | set(error_statuses(method, operation))):
                current = responses.get(str(status))
                if _needs_problem(current):
                    own = current is not None and "content" not in current
                    responses[str(status)] = problem_response(status)
                    if own and current and current.get("description"):
                        responses[str(status)]["description"] = current["description"]
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return document


def declare_path_segments(document: dict[str, Any]) -> dict[str, Any]:
    """Say on every path parameter what routing already requires: one non-empty segment."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if parameter.get("in") == "path" and schema.get("type") == "string":
                    schema.setdefault("pattern", "^[^/]+$")
    return document


def _openapi(app: FastAPI, build: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = declare_path_segments(declare_problems(build()))
            app.openapi_schema = declare_job_request(document)
        return app.openapi_schema

    return openapi


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json, and declare those
    answers in the app's OpenAPI document."""
    app.add_exception_handler(ModelyardError, _on_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)
    app.openapi = _openapi(app, app.openapi)  # type: ignore[method-assign]
