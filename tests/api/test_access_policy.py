"""The access table (api/policy.py) against a live server, and key management's own rules.

Every (route, scope) pair's expected answer is derived from the table and checked: no key is
401 on every keyed route, a key without an admitted scope is 403, and a key with one is let
through to the route (which may then say 404 or 422 about the dummy path and body).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from modelyard.api.policy import ROUTES, Auth
from modelyard.auth.access import Scope, expand_scopes
from tests.api.conftest import user_client
from tests.serving.conftest import MLP, deploy, push_catalog
from tests.support.server import LiveServer

# Scopes a non-admin principal's key can carry, one key each.
USER_SCOPES = [s for s in Scope if s is not Scope.ADMIN]


def _path(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "zz-none", template)


def test_every_route_and_scope_answers_as_the_table_says(
    server: LiveServer, admin: httpx.Client
) -> None:
    assert admin.post("/api/v1/principals", json={"name": "pat"}).status_code == 201
    keys: dict[Scope, httpx.Client] = {}
    for scope in USER_SCOPES:
        created = admin.post(
            "/api/v1/keys", json={"name": scope.value, "scopes": [scope.value], "principal": "pat"}
        )
        assert created.status_code == 201, created.text
        keys[scope] = httpx.Client(
            base_url=server.url,
            headers={"Authorization": f"Bearer {created.json()['key']}"},
            timeout=60,
        )
    anon = httpx.Client(base_url=server.url, timeout=60)
    # The dashboard's routes admit session cookies and CSRF tokens, not keys (tests/ui).
    keyed = {route: rule for route, rule in ROUTES.items() if not route[1].startswith("/ui")}
    checked = 0
    try:
        for (method, template), rule in keyed.items():
            path = _path(template)

            def send(client: httpx.Client, method: str = method, path: str = path) -> int:
                reply = client.request(
                    method, path, content=b"{}", headers={"Content-Type": "application/json"}
                )
                return reply.status_code

            status = send(anon)
            if rule.auth is Auth.KEY:
                assert status == 401, (method, template, status)
            else:
                assert status not in (401, 403), (method, template, status)
            for scope, client in keys.items():
                status = send(client)
                allowed = rule.auth is not Auth.KEY or rule.admits(
                    expand_scopes(frozenset({scope}))
                )
                if allowed:
                    assert status not in (401, 403), (method, template, scope, status)
                else:
                    assert status == 403, (method, template, scope, status)
                checked += 1
            assert send(admin) not in (401, 403), (method, template)
    finally:
        anon.close()
        for client in keys.values():
            client.close()
    assert checked == len(keyed) * len(USER_SCOPES)


def test_key_management_needs_the_keys_scope(server: LiveServer, admin: httpx.Client) -> None:
    reader = user_client(admin, "reader", ["read"])
    runner = user_client(admin, "runner", ["infer"])
    admin_key_id = admin.get("/api/v1/whoami").json()["key"]["id"]
    # A read-only key cannot revoke anyone's key, the admin's included.
    assert reader.delete(f"/api/v1/keys/{admin_key_id}").status_code == 403
    assert admin.get("/api/v1/whoami").status_code == 200
    # An infer-only key can neither list nor create keys; a read key cannot copy itself.
    assert runner.get("/api/v1/keys").status_code == 403
    assert runner.post("/api/v1/keys", json={"name": "x", "scopes": ["infer"]}).status_code == 403
    assert reader.post("/api/v1/keys", json={"name": "x", "scopes": ["read"]}).status_code == 403
    # With 'keys', a user manages their own keys only.
    keeper = user_client(admin, "keeper", ["read", "keys"])
    assert keeper.delete(f"/api/v1/keys/{admin_key_id}").status_code == 404
    own = keeper.get("/api/v1/keys").json()
    assert {k["principal"]["name"] for k in own["items"]} == {"keeper"}


def test_a_key_never_creates_a_stronger_or_longer_lived_key(
    server: LiveServer, admin: httpx.Client
) -> None:
    limit = datetime.now(UTC) + timedelta(days=2)
    assert admin.post("/api/v1/principals", json={"name": "kim"}).status_code == 201
    created = admin.post(
        "/api/v1/keys",
        json={
            "name": "k",
            "scopes": ["read", "keys"],
            "principal": "kim",
            "expires_at": limit.isoformat(),
        },
    ).json()
    kim = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {created['key']}"}, timeout=60
    )
    with kim:
        more = kim.post("/api/v1/keys", json={"name": "w", "scopes": ["read", "write"]})
        assert more.status_code == 403 and "write" in more.json()["detail"]
        later = (limit + timedelta(days=30)).isoformat()
        longer = kim.post(
            "/api/v1/keys", json={"name": "l", "scopes": ["read"], "expires_at": later}
        )
        assert longer.status_code == 403 and "outlive" in longer.json()["detail"]
        # Without an expiry of its own, the new key expires with its creator.
        child = kim.post("/api/v1/keys", json={"name": "c", "scopes": ["read"]})
        assert child.status_code == 201, child.text
        expires = datetime.fromisoformat(child.json()["expires_at"])
        assert abs((expires - limit).total_seconds()) < 1
        # Nor can it mint the one scope that would lift every limit.
        assert kim.post("/api/v1/keys", json={"name": "a", "scopes": ["admin"]}).status_code == 403


@pytest.mark.parametrize("route", ["predict", "v2"])
def test_the_inference_permission_cache_is_per_key(
    server: LiveServer, admin: httpx.Client, tmp_path: Path, route: str
) -> None:
    push_catalog(admin, "mlp", MLP, tmp_path)
    deploy(admin, "mlp", model="mlp")
    assert admin.put("/api/v1/deployments/mlp/acl", json={"public": True}).status_code == 200
    assert admin.post("/api/v1/principals", json={"name": "uma"}).status_code == 201
    clients = {}
    for scopes in (["infer"], ["read"]):
        created = admin.post(
            "/api/v1/keys", json={"name": scopes[0], "scopes": scopes, "principal": "uma"}
        ).json()
        clients[scopes[0]] = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {created['key']}"}, timeout=60
        )
    if route == "predict":
        url, body = "/api/v1/deployments/mlp/predict", {"inputs": [[0.0] * 64]}
    else:
        url = "/v2/models/mlp/infer"
        body = {
            "inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]
        }
    try:
        assert clients["infer"].post(url, json=body).status_code == 200
        # Right after the same user's infer key was let in, the read key still is not.
        assert clients["read"].post(url, json=body).status_code == 403
    finally:
        for client in clients.values():
            client.close()
