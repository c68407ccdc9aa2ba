"""A live server with a small MLP deployed, and keys for callers with limits."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.serving.conftest import MLP, deploy, push_catalog
from tests.support.server import LiveServer, live_server

REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_available() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except Exception:
        return False


def unique_prefix() -> str:
    """A Redis key prefix of one test, so runs (and tests) never share counters."""
    return f"mytest-{uuid.uuid4().hex[:12]}"


@dataclass
class Key:
    id: str
    secret: str
    principal: str

    def client(self, url: str) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.secret}"}
        return httpx.Client(base_url=url, headers=auth, timeout=60)


def make_key(
    admin: httpx.Client, principal: str, scopes: list[str], project: str | None = None
) -> Key:
    """A key of ``principal`` (created if need be)."""
    reply = admin.post("/api/v1/principals", json={"name": principal})
    assert reply.status_code in (201, 409), reply.text
    body: dict[str, object] = {"name": f"k-{uuid.uuid4().hex[:6]}", "scopes": scopes}
    body["principal"] = principal
    if project is not None:
        body["project"] = project
    reply = admin.post("/api/v1/keys", json=body)
    assert reply.status_code == 201, reply.text
    data = reply.json()
    return Key(data["id"], data["key"], principal)


def predict(client: httpx.Client, name: str = "mlp", rows: int = 1) -> httpx.Response:
    x = np.zeros((rows, 64), dtype=np.float32).tolist()
    return client.post(f"/api/v1/deployments/{name}/predict", json={"inputs": x})


@pytest.fixture
def served(make_settings: Callable[..., object], tmp_path: Path) -> Iterator[LiveServer]:
    settings = make_settings(usage_flush_s=0.2, limits_cache_s=0.5)
    with live_server(settings) as srv:  # type: ignore[arg-type]
        auth = {"Authorization": f"Bearer {srv.admin_key}"}
        with httpx.Client(base_url=srv.url, headers=auth, timeout=120) as api:
            push_catalog(api, "mlp", MLP, tmp_path)
            for name in ("mlp", "mlp2"):
                deploy(api, name, model="mlp", version=1)
                acl = {"public": True, "grants": []}
                api.put(f"/api/v1/deployments/{name}/acl", json=acl).raise_for_status()
        yield srv


@pytest.fixture
def admin(served: LiveServer) -> Iterator[httpx.Client]:
    auth = {"Authorization": f"Bearer {served.admin_key}"}
    with httpx.Client(base_url=served.url, headers=auth, timeout=120) as client:
        yield client
