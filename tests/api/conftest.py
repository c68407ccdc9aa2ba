"""A live server per test, on the SQLite default unless a test asks otherwise."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support.server import LiveServer, live_server


@pytest.fixture
def server(make_settings: Callable[..., object]) -> Iterator[LiveServer]:
    with live_server(make_settings()) as srv:  # type: ignore[arg-type]
        yield srv


@pytest.fixture
def admin(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"}, timeout=60
    ) as client:
        yield client


def user_client(admin: httpx.Client, name: str, scopes: list[str]) -> httpx.Client:
    """Create a principal and a key for it; return a client using that key."""
    assert admin.post("/api/v1/principals", json={"name": name}).status_code == 201
    reply = admin.post("/api/v1/keys", json={"name": "k", "scopes": scopes, "principal": name})
    assert reply.status_code == 201, reply.text
    return httpx.Client(
        base_url=str(admin.base_url),
        headers={"Authorization": f"Bearer {reply.json()['key']}"},
        timeout=60,
    )
