"""Session cookies and CSRF tokens without a server: what a forged, altered, expired or
ended cookie amounts to, and where sign-in may send the browser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.responses import Response

from modelyard.auth.access import Caller
from modelyard.auth.keys import hash_key
from modelyard.auth.service import AuthService
from modelyard.config import Settings
from modelyard.ui.sessions import Sessions, safe_next, ui_secret

KEY = "my_some-key-0123456789"


def _sessions(secret: bytes = b"s" * 32, ttl: float = 60) -> Sessions:
    return Sessions(secret, AuthService.__new__(AuthService), ttl, lambda _r, _e: Response())


def _caller(expires: datetime | None = None) -> Caller:
    return Caller("p", "pat", False, frozenset({"read"}), "k", key_expires_at=expires)


def test_a_cookie_names_its_key_by_digest_and_reads_back() -> None:
    sessions = _sessions()
    session, cookie = sessions.issue(KEY, _caller())
    assert KEY not in cookie and session.digest == hash_key(KEY)
    assert sessions.read(cookie) == session


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c[:-1] + ("0" if c[-1] != "0" else "1"),  # the signature
        lambda c: c.replace(".", ".0", 1),  # the key's digest
        lambda c: "v2" + c[2:],
        lambda c: c.rsplit(".", 1)[0],
        lambda c: "",
    ],
)
def test_an_altered_cookie_is_no_session(change: object) -> None:
    sessions = _sessions()
    _session, cookie = sessions.issue(KEY, _caller())
    assert sessions.read(change(cookie)) is None  # type: ignore[operator]


def test_a_cookie_signed_with_another_secret_is_no_session() -> None:
    _session, cookie = _sessions(b"a" * 32).issue(KEY, _caller())
    assert _sessions(b"b" * 32).read(cookie) is None


def test_sessions_end_when_they_expire_with_their_key_or_are_ended() -> None:
    sessions = _sessions(ttl=3600)
    soon = datetime.now(UTC) + timedelta(seconds=30)
    session, _cookie = sessions.issue(KEY, _caller(soon))
    assert session.expires <= soon.timestamp()
    _gone, cookie = _sessions(ttl=-1).issue(KEY, _caller())
    assert sessions.read(cookie) is None
    session, cookie = sessions.issue(KEY, _caller())
    sessions.end(session)
    assert sessions.read(cookie) is None


def test_csrf_tokens_are_bound_to_the_session() -> None:
    sessions = _sessions()
    first, _ = sessions.issue(KEY, _caller())
    second, _ = sessions.issue(KEY, _caller())
    assert sessions.csrf_token(first) != sessions.csrf_token(second)
    assert sessions.signin_token("a") != sessions.signin_token("b")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/ui/jobs?status=running", "/ui/jobs?status=running"),
        ("https://evil.example/ui", "/ui"),
        ("//evil.example/ui", "/ui"),
        ("/ui\\@evil.example", "/ui"),
        ("/uix/../api", "/ui"),
        ("/ui", "/ui"),
        (None, "/ui"),
    ],
)
def test_sign_in_sends_the_browser_only_to_this_dashboard(
    target: str | None, expected: str
) -> None:
    assert safe_next(target) == expected


def test_the_secret_is_kept_in_the_data_dir_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = ui_secret(settings)
    assert first == ui_secret(settings) and len(first) == 64
    assert (tmp_path / "ui-secret").stat().st_mode & 0o077 == 0
    assert ui_secret(Settings(data_dir=tmp_path, ui_secret="given")) == b"given"
