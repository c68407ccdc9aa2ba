"""The first push of a model name registers the model, as MLflow's ``register_model`` does,
with the usual name checks and access rules; a refused push leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.api.conftest import user_client
from tests.serving.user_models import mlp, onnx_file, push, pushed


def test_the_first_push_registers_the_model(admin: httpx.Client, tmp_path: Path) -> None:
    path = onnx_file(tmp_path, "m", mlp(), "x")
    version = pushed(admin, "brand-new", path)
    assert version["version"] == 1 and version["format"] == "onnx"
    model = admin.get("/api/v1/models/brand-new").json()
    assert model["latest_version"] == 1 and model["owner"]["name"] == "admin"
    assert pushed(admin, "brand-new", path)["version"] == 2


def test_names_and_artifacts_are_checked_before_anything_is_registered(
    admin: httpx.Client, tmp_path: Path
) -> None:
    path = onnx_file(tmp_path, "m", mlp(), "x")
    reply = push(admin, "Not A Name!", path)
    assert reply.status_code == 422 and "model name" in reply.text, reply.text
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    assert push(admin, "fresh", junk).status_code in (415, 422)
    assert admin.get("/api/v1/models/fresh").status_code == 404
    assert admin.get("/api/v1/models").json()["total"] == 0


def test_access_rules_hold_for_new_and_existing_names(admin: httpx.Client, tmp_path: Path) -> None:
    path = onnx_file(tmp_path, "m", mlp(), "x")
    alice = user_client(admin, "alice", ["read", "write"])
    reader = user_client(admin, "reader", ["read"])
    pushed(alice, "alices", path)
    # Another user's model is not found, and not taken over or re-registered.
    mallory = user_client(admin, "mallory", ["read", "write"])
    reply = push(mallory, "alices", path)
    assert reply.status_code == 404, reply.text
    assert admin.get("/api/v1/models/alices/versions").json()["total"] == 1
    # A key without the write scope registers nothing.
    assert push(reader, "readers", path).status_code == 403
    assert admin.get("/api/v1/models/readers").status_code == 404
    # Shared with write access, another user pushes to it.
    acl = {"public": False, "grants": [{"principal": "mallory", "permission": "write"}]}
    assert alice.put("/api/v1/models/alices/acl", json=acl).status_code == 200
    assert pushed(mallory, "alices", path)["version"] == 2
