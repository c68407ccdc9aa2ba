"""Live servers and SDK clients for the SDK's integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from modelyard.client import Client
from tests.support.server import LiveServer, live_server


@pytest.fixture
def server(make_settings: Callable[..., object]) -> Iterator[LiveServer]:
    with live_server(make_settings()) as srv:  # type: ignore[arg-type]
        yield srv


@pytest.fixture
def admin(server: LiveServer) -> Iterator[Client]:
    with Client(server.url, server.admin_key) as client:
        yield client


@pytest.fixture
def make_user(admin: Client) -> Iterator[Callable[..., Client]]:
    """Create a principal with a key; return an SDK client using that key."""
    clients: list[Client] = []

    def make(name: str, scopes: tuple[str, ...] = ("read", "write")) -> Client:
        admin.principals.create(name)
        key = admin.keys.create(f"{name}-key", scopes, principal=name)
        client = Client(admin.base_url, key.key)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
