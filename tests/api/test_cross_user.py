"""Two users, one attacking the other: every route of the access table is turned against the
other user's data set, model, version, alias, deployment, job, key and project, and nothing
moves. Once as strangers, once as members of a common project attacking what the other keeps
in a project of their own."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from modelyard.api.policy import ROUTES, Auth
from modelyard.auth.access import Scope
from tests.api.conftest import user_client
from tests.jobs.conftest import train_body, upload_digits, wait_for
from tests.serving.conftest import MLP, deploy, push_catalog
from tests.support.server import LiveServer

ATTACKER_SCOPES = ["read", "write", "infer", "keys"]
ROW = {"inputs": [[0.0] * 64]}
V2_ROW = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}


def _victim_resources(alice: httpx.Client, tmp_path: Path) -> dict[str, str]:
    upload_digits(alice, tmp_path)  # the data set "digits"
    push_catalog(alice, "a-model", MLP, tmp_path)
    assert alice.put("/api/v1/models/a-model/aliases/prod", json={"version": 1}).status_code == 200
    deploy(alice, "a-dep", model="a-model")
    job = alice.post("/api/v1/jobs", json=train_body(epochs=1, output_model="a-trained"))
    assert job.status_code in (200, 201, 202), job.text
    job_id = job.json()["id"]
    assert wait_for(alice, job_id)["status"] == "succeeded"
    me = alice.get("/api/v1/whoami").json()
    data = alice.get("/api/v1/datasets/digits").json()
    return {"job": job_id, "key": me["key"]["id"], "file": data["id"]}


def _path(template: str, ids: dict[str, str]) -> str:
    family = template.split("/")[3] if template.startswith("/api/v1/") else ""
    names = {"datasets": "digits", "models": "a-model", "deployments": "a-dep"}
    values = {
        "name": names.get(family, "a-model"),
        "ref": "1",
        "other": "1",
        "alias": "prod",
        "job_id": ids["job"],
        "key_id": ids["key"],
        "model": "a-dep",
        "version": "1",
        "file_id": ids["file"],
        "project": ids["project"],
        "principal": "alice",
    }
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), "none"), template)


def _attack(mallory: httpx.Client, method: str, template: str, path: str) -> httpx.Response:
    body: Any = {}
    if template.endswith("/acl"):
        body = {"public": True, "grants": [{"principal": "mallory", "permission": "write"}]}
    elif template.endswith("/aliases/{alias}"):
        body = {"version": 1}
    elif template.endswith("/members/{principal}"):
        body = {"role": "owner"}
    elif template == "/api/v1/projects/{project}":
        body = {"description": "taken"}
    elif template.endswith(("/predict", "/explain")):
        body = ROW
    elif template.endswith("/privacy-budget"):
        body = {"epsilon": 1.0, "delta": 1e-5}
    elif template.endswith(":explain"):
        body = {"instances": ROW["inputs"]}
    elif template.endswith("/infer"):
        body = V2_ROW
    if template.endswith("/versions") and method == "POST":
        return mallory.post(path, params={"filename": "w.safetensors"}, content=b"\0" * 64)
    params = {"start": 0} if template.endswith(("/usage", "/costs")) else None
    return mallory.request(
        method, path, params=params, json=body if method in ("POST", "PUT", "PATCH") else None
    )


def _walk(mallory: httpx.Client, ids: dict[str, str]) -> None:
    secrets = ["digits", "a-model", "a-dep", "a-trained", ids["job"], ids["key"], ids["file"]]
    secrets += [ids["project"]] if ids["project"] != "alice" else []
    attempts = 0
    for (method, template), rule in ROUTES.items():
        if rule.auth is not Auth.KEY or Scope.ADMIN in rule.scopes:
            continue
        path = _path(template, ids)
        reply = _attack(mallory, method, template, path)
        attempts += 1
        if "{" in template:
            assert reply.status_code in (403, 404), (method, path, reply.status_code, reply.text)
        elif method == "GET":
            assert reply.status_code == 200, (method, path, reply.text)
            leaked = [s for s in secrets if s in reply.text]
            assert leaked == [], (method, path, leaked)
    assert attempts >= 60
    assert "a-dep" not in mallory.get("/metrics").text


def _unchanged(alice: httpx.Client, ids: dict[str, str]) -> None:
    # Everything of Alice's is as she left it.
    assert alice.get("/api/v1/whoami").status_code == 200
    assert alice.get("/api/v1/datasets/digits").status_code == 200
    assert alice.get("/api/v1/models/a-model/versions/1").status_code == 200
    assert "prod" in alice.get("/api/v1/models/a-model/aliases").text
    for family, name in (("datasets", "digits"), ("models", "a-model"), ("deployments", "a-dep")):
        acl = alice.get(f"/api/v1/{family}/{name}/acl").json()
        assert acl == {"public": False, "grants": []}, (family, acl)
    assert alice.get(f"/api/v1/jobs/{ids['job']}").json()["status"] == "succeeded"
    assert alice.post("/api/v1/deployments/a-dep/predict", json=ROW).status_code == 200
    project = alice.get(f"/api/v1/projects/{ids['project']}").json()
    assert project["members"] == [{"principal": "alice", "role": "owner"}]


def test_another_user_can_neither_see_nor_change_what_is_not_theirs(
    server: LiveServer, admin: httpx.Client, tmp_path: Path
) -> None:
    alice = user_client(admin, "alice", ["read", "write", "infer", "keys"])
    mallory = user_client(admin, "mallory", ATTACKER_SCOPES)
    ids = _victim_resources(alice, tmp_path) | {"project": "alice"}
    _walk(mallory, ids)
    _unchanged(alice, ids)


def _bound(client: httpx.Client, project: str) -> httpx.Client:
    """A client with a new key of ``client``'s principal, bound to ``project``."""
    body = {"name": project, "scopes": ATTACKER_SCOPES, "project": project}
    reply = client.post("/api/v1/keys", json=body)
    assert reply.status_code == 201, reply.text
    return httpx.Client(
        base_url=str(client.base_url),
        headers={"Authorization": f"Bearer {reply.json()['key']}"},
        timeout=60,
    )


def test_a_member_of_one_project_reaches_nothing_of_another(
    server: LiveServer, admin: httpx.Client, tmp_path: Path
) -> None:
    alice = user_client(admin, "alice", ["read", "write", "infer", "keys"])
    mallory = user_client(admin, "mallory", ATTACKER_SCOPES)
    # Both work together in "common"; Alice alone in "team-b", with a key bound to it.
    assert alice.post("/api/v1/projects", json={"name": "common"}).status_code == 201
    joined = alice.put("/api/v1/projects/common/members/mallory", json={"role": "owner"})
    assert joined.status_code == 200, joined.text
    assert alice.post("/api/v1/projects", json={"name": "team-b"}).status_code == 201
    team_b = _bound(alice, "team-b")
    ids = _victim_resources(team_b, tmp_path) | {"project": "team-b"}
    _walk(mallory, ids)
    # A key of Mallory's bound to the common project reaches no more.
    _walk(_bound(mallory, "common"), ids)
    _unchanged(team_b, ids)
