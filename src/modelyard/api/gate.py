"""The gate every HTTP request passes before a route reads its body.

A plain ASGI middleware: it finds the route's :class:`~modelyard.api.policy.Rule`, checks the
API key from the headers (401) and its scopes (403), and caps the body by the route's kind
(413), counting bytes as they arrive, so a body the caller may not send is never read and a
chunked body is cut off at the cap instead of being buffered first. The caller it found is
handed to the route (:func:`modelyard.api.deps.get_caller`). Dashboard routes are admitted by
their session cookie instead (:class:`SessionAuth`, implemented by :mod:`modelyard.ui`).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.policy import Auth, Body, Rule, rule_for
from modelyard.auth.access import Caller
from modelyard.errors import (
    Forbidden,
    InvalidInput,
    ModelyardError,
    PayloadTooLarge,
    Unauthenticated,
)
from modelyard.platform import Platform

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]

CALLER_KEY = "modelyard.caller"
_CACHE_SIZE = 4096
_ASCII_DIGITS = re.compile(r"[0-9]+")


class SessionAuth(Protocol):
    """How the gate admits a dashboard request (:data:`Auth.SESSION` routes)."""

    async def caller(self, scope: MutableMapping[str, Any]) -> Caller | None:
        """The caller signed in by the request's session cookie; None without a valid one."""

    async def refuse(
        self, scope: MutableMapping[str, Any], receive: Receive, send: Send, exc: ModelyardError
    ) -> None:
        """Answer a refused dashboard request (a page redirects to sign-in)."""


@dataclass(frozen=True)
class RouteEntry:
    """One route as the gate sees it: its template, methods and compiled path."""

    template: str
    methods: frozenset[str]
    regex: re.Pattern[str]


def entries(routes: Iterable[Any]) -> list[RouteEntry]:
    """The gate's view of Starlette/FastAPI routes (anything with a path regex)."""
    found = []
    for route in routes:
        methods = getattr(route, "methods", None)
        regex = getattr(route, "path_regex", None)
        if methods and regex is not None:
            found.append(RouteEntry(route.path, frozenset(methods), regex))
    return found


def missing_rules(routes: Iterable[RouteEntry]) -> list[str]:
    """Routes that the policy table does not cover (the app refuses to start with any)."""
    return sorted(
        f"{method} {route.template}"
        for route in routes
        for method in route.methods
        if method != "HEAD" and rule_for(method, route.template) is None
    )


def bearer_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, if there is one."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").strip().partition(" ")
            key = key.strip()
            return key if scheme.lower() == "bearer" and key else None
    return None


def project_header(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The project a request asks to work in: ``OpenAI-Project`` (what OpenAI's clients send
    for ``project=``) or ``Modelyard-Project``; None when it names none."""
    return _header(headers, b"modelyard-project") or _header(headers, b"openai-project")


def _header(headers: Iterable[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    for name, value in headers:
        if name == wanted:
            return value.decode("latin-1")
    return None


class Gate:
    """Authentication, scopes and body caps for every route, before any body is read."""

    def __init__(
        self,
        app: ASGIApp,
        platform: Platform,
        routes: list[RouteEntry],
        on_error: ErrorHandler,
        sessions: SessionAuth | None = None,
    ) -> None:
        self.app = app
        self.platform = platform
        self.routes = routes
        self.on_error = on_error
        self.sessions = sessions
        settings = platform.settings
        self.caps = {
            Body.JSON: settings.max_json_bytes,
            Body.INFER: settings.max_infer_bytes,
            Body.UPLOAD: settings.max_upload_bytes,
        }
        self.metrics_require_key = settings.metrics_require_key
        self._resolved: OrderedDict[tuple[str, str], tuple[str, Rule] | None] = OrderedDict()

    def resolve(self, method: str, path: str) -> tuple[str, Rule] | None:
        """The template and rule of the route serving ``method path`` (None: no route)."""
        key = (method, path)
        hit = self._resolved.get(key, False)
        if hit is not False:
            return hit  # type: ignore[return-value]
        found: tuple[str, Rule] | None = None
        for route in self.routes:
            if method in route.methods and route.regex.match(path):
                rule = rule_for(method, route.template)
                found = (route.template, rule) if rule is not None else None
                break
        self._resolved[key] = found
        if len(self._resolved) > _CACHE_SIZE:
            self._resolved.popitem(last=False)
        return found

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        resolved = self.resolve(scope["method"], scope["path"])
        body = resolved[1].body if resolved is not None else Body.JSON
        try:
            _check_no_nul(scope)
            if resolved is not None:
                await self._admit(scope, resolved[1])
            limit = self._declared_limit(scope, body)
        except ModelyardError as exc:
            if resolved is not None and resolved[1].auth is Auth.SESSION and self.sessions:
                await self.sessions.refuse(scope, receive, send, exc)
            else:
                await self._answer(scope, receive, send, exc)
            return
        await self._run_capped(scope, receive, send, limit, body)

    async def _admit(self, scope: MutableMapping[str, Any], rule: Rule) -> None:
        auth = rule.auth
        if auth is Auth.OPTIONAL and self.metrics_require_key:
            auth = Auth.KEY
        if auth is Auth.NONE:
            return
        if auth is Auth.SESSION:
            signed_in = await self.sessions.caller(scope) if self.sessions else None
            if signed_in is None:
                raise Unauthenticated("sign in to the dashboard with an API key")
            caller = signed_in
        else:
            key = bearer_key(scope["headers"])
            if key is None and auth is Auth.OPTIONAL:
                return
            found = self.platform.auth.cached(key)
            if found is None:
                found = await run_in_threadpool(self.platform.auth.authenticate, key)
            caller = found
            project = project_header(scope["headers"])
            if project is not None:
                chosen = self.platform.auth.cached_in_project(caller, project)
                if chosen is None:
                    chosen = await run_in_threadpool(self.platform.auth.in_project, caller, project)
                caller = chosen
        if auth is not Auth.OPTIONAL and not rule.admits(caller.granted):
            wanted = " or ".join(f"'{s.value}'" for s in sorted(rule.scopes))
            raise Forbidden(f"this API key lacks the {wanted} scope")
        scope[CALLER_KEY] = caller

    def _declared_limit(self, scope: MutableMapping[str, Any], body: Body) -> int:
        limit = self.caps[body]
        raw = _header(scope["headers"], b"content-length")
        if raw is not None:
            if not _ASCII_DIGITS.fullmatch(raw.strip()):
                raise InvalidInput("Content-Length must be a non-negative integer")
            if int(raw) > limit:
                raise _too_large(body, limit, int(raw))
        return limit

    async def _run_capped(
        self, scope: MutableMapping[str, Any], receive: Receive, send: Send, limit: int, body: Body
    ) -> None:
        received = 0
        exceeded: PayloadTooLarge | None = None
        started = False
        replaced = False

        async def capped_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = _too_large(body, limit, None)
                    raise exceeded
            return message

        async def guarded_send(message: Message) -> None:
            # However the route reacted to the cut-off body, the answer is the 413.
            nonlocal started, replaced
            if exceeded is not None and not started:
                if not replaced:
                    replaced = True
                    await self._answer(scope, receive, send, exceeded)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except Exception:
            if exceeded is None or started:
                raise
            if not replaced:
                await self._answer(scope, receive, send, exceeded)

    async def _answer(
        self, scope: MutableMapping[str, Any], receive: Receive, send: Send, exc: ModelyardError
    ) -> None:
        # The app's own error handler, so the reply has the shape of the API it was sent to
        # (problem+json, OpenAI's error object on /v1, "error" for Open Inference clients).
        response = await self.on_error(Request(scope, receive), exc)
        await response(scope, receive, send)


def _check_no_nul(scope: MutableMapping[str, Any]) -> None:
    # No name, id or number holds a NUL, and PostgreSQL cannot even compare text with one.
    query = scope.get("query_string", b"").lower()
    if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
        raise InvalidInput("the path or query holds a NUL character")


def _too_large(body: Body, limit: int, declared: int | None) -> PayloadTooLarge:
    setting = {
        Body.JSON: "MODELYARD_MAX_JSON_BYTES",
        Body.INFER: "MODELYARD_MAX_INFER_BYTES",
        Body.UPLOAD: "MODELYARD_MAX_UPLOAD_BYTES",
    }[body]
    size = f"of {declared} bytes " if declared is not None else ""
    return PayloadTooLarge(f"the request body {size}exceeds the limit of {limit} bytes ({setting})")
