"""Dashboard sessions: an API key exchanged for a signed, expiring cookie, and CSRF tokens.

The cookie holds no secret. It names the key by the digest under which the key is stored,
with a random session id and the session's end, signed (HMAC-SHA256) with the server's UI
secret::

    v1.<sha256 of the key>.<session id>.<expires, unix s>.<signature>

Every request looks the key up again through the API's own cached key lookup
(:meth:`AuthService.authenticate_digest`), so a session ends as soon as its key is revoked
(on another server sharing the database, within the cache's few seconds) or expires. Signing
out ends the session on this server at once (the ids of ended sessions are kept until they
would have expired) and removes the cookie.

CSRF tokens are bound to the session: ``HMAC(secret, "csrf:" + session id)``. Every form
carries one in a hidden ``csrf`` field (htmx sends it as ``X-CSRF-Token``). The sign-in form,
before there is a session, carries one bound to a random pre-session cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from modelyard.api.gate import Receive, Send
from modelyard.auth.access import Caller
from modelyard.auth.keys import hash_key
from modelyard.auth.service import AuthService
from modelyard.config import Settings
from modelyard.errors import Forbidden, ModelyardError, Unauthenticated

COOKIE = "modelyard_session"
LOGIN_COOKIE = "modelyard_signin"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_KEY = "modelyard.ui.session"
PATH = "/ui"
_VERSION = "v1"

ErrorPage = Callable[[Request, ModelyardError], Response]


@dataclass(frozen=True)
class Session:
    """One signed-in browser: the key's digest, the session id and when it ends."""

    digest: str
    sid: str
    expires: int


def ui_secret(settings: Settings) -> bytes:
    """The key that signs sessions: ``MODELYARD_UI_SECRET``, else one kept in the data dir
    (created at the first start, readable by the server's user only)."""
    if settings.ui_secret is not None:
        return settings.ui_secret.get_secret_value().encode()
    path = settings.data_dir / "ui-secret"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    for _ in range(50):  # another process may have created it an instant ago
        raw = path.read_text().strip()
        if raw:
            return raw.encode()
        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty; delete it or set MODELYARD_UI_SECRET")


class Sessions:
    """Issues and checks session cookies and CSRF tokens; admits dashboard requests for the
    gate (:class:`modelyard.api.gate.SessionAuth`)."""

    def __init__(
        self, secret: bytes, auth: AuthService, ttl_s: float, error_page: ErrorPage
    ) -> None:
        self._secret = secret
        self._auth = auth
        self.ttl_s = ttl_s
        self._error_page = error_page
        self._ended: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- cookies -----------------------------------------------------------------------
    def _sign(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()

    def issue(self, key: str, caller: Caller) -> tuple[Session, str]:
        """A new session for the API key ``key`` (already authenticated as ``caller``) and
        its cookie value; it ends after ``ttl_s`` or when the key expires, if sooner."""
        expires = time.time() + self.ttl_s
        if caller.key_expires_at is not None:
            expires = min(expires, caller.key_expires_at.timestamp())
        session = Session(hash_key(key), secrets.token_hex(16), int(expires))
        body = f"{_VERSION}.{session.digest}.{session.sid}.{session.expires}"
        return session, f"{body}.{self._sign(body)}"

    def read(self, value: str | None) -> Session | None:
        """The session a cookie value names, if its signature holds and it has not ended."""
        if not value:
            return None
        body, _, signature = value.rpartition(".")
        parts = body.split(".")
        if len(parts) != 4 or parts[0] != _VERSION or not parts[3].isdigit():
            return None
        if not hmac.compare_digest(self._sign(body), signature):
            return None
        session = Session(parts[1], parts[2], int(parts[3]))
        if session.expires <= time.time() or session.sid in self._ended:
            return None
        return session

    def end(self, session: Session) -> None:
        """End ``session`` on this server (signing out)."""
        now = time.time()
        with self._lock:
            self._ended = {sid: t for sid, t in self._ended.items() if t > now}
            self._ended[session.sid] = session.expires

    # -- CSRF --------------------------------------------------------------------------
    def csrf_token(self, session: Session) -> str:
        """The token every form of ``session`` carries."""
        return self._sign(f"csrf:{session.sid}")

    def signin_token(self, nonce: str) -> str:
        """The sign-in form's token, bound to its pre-session cookie ``nonce``."""
        return self._sign(f"signin:{nonce}")

    def check_csrf(self, request: Request, form: FormData) -> None:
        """403 unless the form (or the X-CSRF-Token header) carries the session's token."""
        session: Session | None = request.scope.get(SESSION_KEY)
        sent = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
        if session is None or not isinstance(sent, str):
            raise Forbidden("the form's CSRF token is missing or wrong; reload the page")
        if not hmac.compare_digest(sent.encode(), self.csrf_token(session).encode()):
            raise Forbidden("the form's CSRF token is missing or wrong; reload the page")

    # -- the gate's side ---------------------------------------------------------------
    async def caller(self, scope: MutableMapping[str, Any]) -> Caller | None:
        session = self.read(_cookie(scope, COOKIE))
        if session is None:
            return None
        found = self._auth.cached_digest(session.digest)
        if found is None:
            try:
                found = await run_in_threadpool(self._auth.authenticate_digest, session.digest)
            except Unauthenticated:
                return None
        scope[SESSION_KEY] = session
        return found

    async def refuse(
        self, scope: MutableMapping[str, Any], receive: Receive, send: Send, exc: ModelyardError
    ) -> None:
        request = Request(scope, receive)
        response: Response
        if isinstance(exc, Unauthenticated):
            target = f"{PATH}/login?next={quote(_here(request), safe='/')}"
            if request.headers.get("hx-request"):
                response = Response(status_code=401, headers={"HX-Redirect": target})
            elif request.method in ("GET", "HEAD"):
                response = RedirectResponse(target, status_code=303)
            else:
                response = Response(exc.detail, status_code=401, media_type="text/plain")
            response.delete_cookie(COOKIE, path=PATH)
        else:
            response = self._error_page(request, exc)
        await response(scope, receive, send)


def _here(request: Request) -> str:
    path = request.url.path
    return path + (f"?{request.url.query}" if request.url.query else "")


def _cookie(scope: MutableMapping[str, Any], name: str) -> str | None:
    header: bytes
    value: bytes
    for header, value in scope["headers"]:
        if header == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, found = part.strip().partition("=")
                if key == name:
                    return found
    return None


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: a dashboard path of this server, never another site."""
    unsafe = ("\\", "\n", "\r")
    ours = target == PATH or (target or "").startswith((f"{PATH}/", f"{PATH}?"))
    if target and ours and not any(c in target for c in unsafe):
        return target
    return PATH


__all__ = ["COOKIE", "CSRF_FIELD", "LOGIN_COOKIE", "Session", "Sessions", "safe_next", "ui_secret"]
