"""Limits hold across server processes: two ``modelyard serve`` processes sharing
PostgreSQL and Redis count one key's requests together."""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import MLP, deploy, push_catalog
from tests.support.process import server_process
from tests.support.server import ADMIN_KEY
from tests.usage.conftest import REDIS_URL, make_key, predict, redis_available, unique_prefix

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def redis_url() -> str:
    if not redis_available():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    return REDIS_URL


def test_a_limit_of_5_a_minute_holds_over_two_servers_sharing_redis(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    env = {
        "MODELYARD_DATABASE_URL": pg_url,
        "MODELYARD_REDIS_URL": redis_url,
        "MODELYARD_REDIS_PREFIX": unique_prefix(),
        "MODELYARD_LIMITS_CACHE_S": "0.5",
    }
    data = tmp_path / "data"
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(server_process(data, tmp_path / "a.log", **env))
        admin = stack.enter_context(httpx.Client(base_url=first.url, headers=AUTH, timeout=120))
        push_catalog(admin, "mlp", MLP, tmp_path)
        deploy(admin, "mlp", model="mlp", version=1)
        admin.put("/api/v1/deployments/mlp/acl", json={"public": True, "grants": []})
        key = make_key(admin, "alice", ["infer"])
        reply = admin.put(f"/api/v1/limits/keys/{key.id}", json={"requests_per_minute": 5})
        assert reply.status_code == 200, reply.text

        second = stack.enter_context(server_process(data, tmp_path / "b.log", **env))
        clients = [
            stack.enter_context(key.client(first.url)),
            stack.enter_context(key.client(second.url)),
        ]
        for client in clients:  # the second server has loaded the deployment
            assert client.get("/v2/models/mlp/ready").status_code == 200

        turns = itertools.cycle(clients)
        answers = [predict(next(turns)) for _ in range(5)]
        assert [r.status_code for r in answers] == [200] * 5, [r.text for r in answers]
        remaining = [int(r.headers["x-ratelimit-remaining-requests"]) for r in answers]
        assert remaining == [4, 3, 2, 1, 0]
        for client in clients:
            refused = predict(client)
            assert refused.status_code == 429, refused.text
            assert refused.headers["x-ratelimit-limit-requests"] == "5"
            assert refused.headers["x-ratelimit-remaining-requests"] == "0"
            assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
            assert int(refused.headers["retry-after"]) >= 1

        # A limit raised through one server takes effect on the other within the cache time.
        admin.put(f"/api/v1/limits/keys/{key.id}", json={"requests_per_minute": 1000})
        other = clients[1]
        deadline = 50
        while predict(other).status_code == 429 and deadline:
            import time

            time.sleep(0.1)
            deadline -= 1
        assert deadline, "the second server never saw the new limit"
