"""The SDK's ``force`` on deploy, update and set_alias, and ``signature`` / ``force`` on push:
sent only when asked (against httpx.MockTransport)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.client import Client, ConflictError
from tests.client.test_deploy_unit import BASE, deployment_json

VERSION = {
    "id": "v" * 32,
    "model": "ts",
    "version": 1,
    "format": "torchscript",
    "size": 6,
    "sha256": "0" * 64,
    "spec": None,
    "signature": None,
    "metrics": {},
    "params": {},
    "description": "",
    "lineage": {},
    "created_by": {"id": "p" * 32, "name": "alice"},
    "created_at": "2024-05-01T12:00:00+00:00",
}


def client(seen: list[httpx.Request], reply: httpx.Response) -> Client:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return reply

    return Client(BASE, "my_key", transport=httpx.MockTransport(handle))


def test_deploy_update_and_alias_send_force_only_when_asked() -> None:
    seen: list[httpx.Request] = []
    with client(seen, httpx.Response(200, json=deployment_json())) as sdk:
        sdk.deploy("mlp", "mlp@2")
        sdk.deploy("mlp", "mlp@2", force=True)
        sdk.deployments.update("mlp", version=3)
        sdk.deployments.update("mlp", version=3, force=True)
        sdk.deployments.update("mlp", force=True)
        with pytest.raises(ValueError, match="needs a change"):
            sdk.deployments.update("mlp")
    bodies = [json.loads(r.content) for r in seen]
    assert "force" not in bodies[0] and bodies[1]["force"] is True
    assert bodies[2] == {"version": "3"}
    assert bodies[3] == {"version": "3", "force": True}
    assert bodies[4] == {"force": True}
    seen.clear()
    with client(seen, httpx.Response(200, json={"alias": "prod", "version": 2})) as sdk:
        sdk.models.set_alias("mlp", "prod", 2)
        sdk.models.set_alias("mlp", "prod", 2, force=True)
    assert [json.loads(r.content) for r in seen] == [
        {"version": 2},
        {"version": 2, "force": True},
    ]


def test_a_refused_swap_raises_conflict_with_the_difference() -> None:
    problem = {"title": "Conflict", "status": 409, "detail": "input 'input_layer' is gone"}
    seen: list[httpx.Request] = []
    with (
        client(seen, httpx.Response(409, json=problem)) as sdk,
        pytest.raises(ConflictError, match="input_layer"),
    ):
        sdk.deployments.update("mlp", version=2)


def test_push_sends_a_signature_and_force(tmp_path: Path) -> None:
    artifact = tmp_path / "model.pt"
    artifact.write_bytes(b"module")
    signature: dict[str, Any] = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]}
    seen: list[httpx.Request] = []
    with client(seen, httpx.Response(201, json=VERSION)) as sdk:
        sdk.models.push("ts", artifact)
        sdk.models.push("ts", artifact, signature=signature, force=True)
    plain, described = (r.url.params for r in seen)
    assert "signature" not in plain and "force" not in plain
    assert json.loads(described["signature"]) == signature and described["force"] == "true"
