"""Projects over HTTP: members and roles, keys bound to a project, and the audit log."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.api.conftest import user_client
from tests.jobs.conftest import train_body, upload_digits, wait_for
from tests.serving.conftest import MLP, push_catalog
from tests.support.server import LiveServer


def _bound(client: httpx.Client, project: str, scopes: list[str]) -> httpx.Client:
    """A client using a new key of the same principal, bound to ``project``."""
    reply = client.post(
        "/api/v1/keys", json={"name": project, "scopes": scopes, "project": project}
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["project"] == project
    return httpx.Client(
        base_url=str(client.base_url),
        headers={"Authorization": f"Bearer {reply.json()['key']}"},
        timeout=60,
    )


def _names(client: httpx.Client, family: str) -> set[str]:
    reply = client.get(f"/api/v1/{family}")
    assert reply.status_code == 200, reply.text
    return {item["name"] for item in reply.json()["items"]}


def test_every_principal_has_a_personal_project(admin: httpx.Client) -> None:
    ana = user_client(admin, "ana", ["read", "write", "keys"])
    projects = ana.get("/api/v1/projects").json()
    assert projects["total"] == 1
    [personal] = projects["items"]
    assert personal["name"] == "ana"
    assert personal["personal"] is True
    assert personal["role"] == "owner"
    assert personal["members"] == [{"principal": "ana", "role": "owner"}]
    # The personal project goes with its principal, and keeps its owner.
    assert ana.delete("/api/v1/projects/ana").status_code == 409
    assert ana.delete("/api/v1/projects/ana/members/ana").status_code == 409
    # A project named like a principal still leaves room for that principal's own.
    assert ana.post("/api/v1/projects", json={"name": "bo"}).status_code == 201
    bo = user_client(admin, "bo", ["read"])
    assert [p["name"] for p in bo.get("/api/v1/projects").json()["items"]] == ["bo-personal"]


def test_members_share_a_project_and_roles_decide_what_they_may_do(
    server: LiveServer, admin: httpx.Client, tmp_path: Path
) -> None:
    ana = user_client(admin, "ana", ["read", "write", "infer", "keys"])
    bob = user_client(admin, "bob", ["read", "write", "infer", "keys"])
    eve = user_client(admin, "eve", ["read", "write", "infer", "keys"])
    created = ana.post("/api/v1/projects", json={"name": "vision", "description": "images"})
    assert created.status_code == 201, created.text
    assert ana.post("/api/v1/projects", json={"name": "vision"}).status_code == 409
    assert ana.post("/api/v1/projects", json={"name": "bad name!"}).status_code == 422
    # Bob joins as a viewer; only an owner may add members.
    assert bob.put("/api/v1/projects/vision/members/bob", json={"role": "owner"}).status_code == 404
    added = ana.put("/api/v1/projects/vision/members/bob", json={"role": "viewer"})
    assert added.status_code == 200, added.text
    assert {"principal": "bob", "role": "viewer"} in added.json()["members"]
    bad_role = ana.put("/api/v1/projects/vision/members/bob", json={"role": "boss"})
    assert bad_role.status_code == 422
    assert (
        ana.put("/api/v1/projects/vision/members/nobody", json={"role": "member"}).status_code
        == 404
    )

    # Ana works in the project with a key bound to it: what she makes goes there.
    ana_vision = _bound(ana, "vision", ["read", "write", "infer"])
    upload_digits(ana_vision, tmp_path, name="v-digits")
    push_catalog(ana_vision, "v-model", MLP, tmp_path)
    # Her bound key sees only the project: not her personal work.
    upload_digits(ana, tmp_path, name="a-personal")
    assert _names(ana_vision, "datasets") == {"v-digits"}
    assert ana_vision.get("/api/v1/datasets/v-digits").json()["project"] == "vision"
    assert ana.get("/api/v1/datasets/a-personal").json()["project"] == "ana"
    made = ana_vision.post("/api/v1/models", json={"name": "v-empty"})
    assert made.status_code == 201 and made.json()["project"] == "vision", made.text
    assert ana_vision.delete("/api/v1/models/v-empty").status_code == 204
    assert _names(ana, "datasets") == {"v-digits", "a-personal"}

    # A job submitted in the project registers its model there, and its members see the job.
    job = ana_vision.post(
        "/api/v1/jobs", json=train_body(epochs=1, dataset="v-digits", output_model="v-trained")
    )
    assert job.status_code in (200, 201, 202), job.text
    finished = wait_for(ana_vision, job.json()["id"])
    assert finished["status"] == "succeeded" and finished["project"] == "vision"
    assert "v-trained" in _names(ana_vision, "models")
    assert bob.get(f"/api/v1/jobs/{job.json()['id']}").status_code == 200
    assert bob.post(f"/api/v1/jobs/{job.json()['id']}/cancel").status_code == 403
    assert eve.get(f"/api/v1/jobs/{job.json()['id']}").status_code == 404
    assert eve.get("/api/v1/jobs").json()["total"] == 0

    # Bob, a viewer, reads the project's resources but changes none of them.
    assert _names(bob, "models") == {"v-model", "v-trained"}
    assert bob.get("/api/v1/datasets/v-digits").status_code == 200
    assert bob.patch("/api/v1/models/v-model", json={"description": "x"}).status_code == 403
    assert bob.delete("/api/v1/datasets/v-digits").status_code == 403
    assert bob.get("/api/v1/datasets/a-personal").status_code == 404
    # A viewer's key bound to the project has no write at all.
    bob_vision = _bound(bob, "vision", ["read", "write"])
    refused = bob_vision.post("/api/v1/models", json={"name": "bob-model"})
    assert refused.status_code == 403, refused.text
    # Promoted to member, Bob may change them, with the same keys, at once.
    assert (
        ana.put("/api/v1/projects/vision/members/bob", json={"role": "member"}).status_code == 200
    )
    assert bob.patch("/api/v1/models/v-model", json={"description": "x"}).status_code == 200
    assert bob_vision.post("/api/v1/models", json={"name": "bob-model"}).status_code == 201
    assert _names(ana_vision, "models") == {"v-model", "v-trained", "bob-model"}
    # But not manage the project.
    assert bob.put("/api/v1/projects/vision/members/eve", json={"role": "owner"}).status_code == 403
    assert bob.patch("/api/v1/projects/vision", json={"description": "mine"}).status_code == 403

    # Eve, outside the project, sees none of it anywhere.
    assert _names(eve, "models") == set()
    assert _names(eve, "datasets") == set()
    assert eve.get("/api/v1/models/v-model").status_code == 404
    assert eve.get("/api/v1/projects/vision").status_code == 404
    assert [p["name"] for p in eve.get("/api/v1/projects").json()["items"]] == ["eve"]
    refused_key = eve.post(
        "/api/v1/keys", json={"name": "k", "scopes": ["read"], "project": "vision"}
    )
    assert refused_key.status_code == 404

    # Out of the project, Bob loses it at once, also through his bound key.
    assert ana.delete("/api/v1/projects/vision/members/bob").status_code == 204
    assert bob.get("/api/v1/models/v-model").status_code == 404
    assert _names(bob_vision, "models") == set()
    # The last owner stays; a project that holds resources is not deleted.
    assert ana.delete("/api/v1/projects/vision/members/ana").status_code == 409
    assert ana.delete("/api/v1/projects/vision").status_code == 409


def test_the_audit_log_records_membership_and_keys_for_owners_and_admins(
    admin: httpx.Client,
) -> None:
    ana = user_client(admin, "ana", ["read", "write", "keys"])
    bob = user_client(admin, "bob", ["read", "write", "keys"])
    assert ana.post("/api/v1/projects", json={"name": "nlp"}).status_code == 201
    assert ana.put("/api/v1/projects/nlp/members/bob", json={"role": "member"}).status_code == 200
    _bound(bob, "nlp", ["read"])
    assert ana.put("/api/v1/projects/nlp/members/bob", json={"role": "viewer"}).status_code == 200

    owner_view = ana.get("/api/v1/audit", params={"project": "nlp"})
    assert owner_view.status_code == 200, owner_view.text
    actions = [(e["action"], e["principal"]) for e in owner_view.json()["items"]]
    assert actions == [
        ("project.member.set", "ana"),
        ("key.create", "bob"),
        ("project.member.set", "ana"),
        ("project.create", "ana"),
    ]
    changes = [
        e["detail"] for e in owner_view.json()["items"] if e["action"] == "project.member.set"
    ]
    assert changes[0] == {"principal": "bob", "role": "viewer", "before": "member"}
    # Filters: by actor, by action prefix, by time.
    by_bob = ana.get("/api/v1/audit", params={"project": "nlp", "actor": "bob"}).json()
    assert [e["action"] for e in by_bob["items"]] == ["key.create"]
    members = ana.get("/api/v1/audit", params={"project": "nlp", "action": "project.member."})
    assert members.json()["total"] == 2
    future = ana.get("/api/v1/audit", params={"project": "nlp", "start": "2999-01-01T00:00:00Z"})
    assert future.json()["total"] == 0
    # A member who does not own the project reads none of its log; an admin reads it all.
    assert bob.get("/api/v1/audit", params={"project": "nlp"}).status_code == 403
    assert all(e["project"] != "nlp" for e in bob.get("/api/v1/audit").json()["items"])
    everything = admin.get("/api/v1/audit", params={"action": "principal.create"}).json()
    assert {e["resource"] for e in everything["items"]} >= {"principal:ana", "principal:bob"}
    assert admin.get("/api/v1/audit", params={"project": "nope"}).status_code == 404
    # Times are RFC 3339 date-times, as the document says; a project is also found by its id.
    assert ana.get("/api/v1/audit", params={"start": "0.5"}).status_code == 422
    nlp = ana.get("/api/v1/projects/nlp").json()
    assert ana.get(f"/api/v1/projects/{nlp['id']}").json()["name"] == "nlp"


def test_a_request_names_the_project_it_works_in_with_a_header(
    admin: httpx.Client, tmp_path: Path
) -> None:
    ana = user_client(admin, "ana", ["read", "write", "keys"])
    eve = user_client(admin, "eve", ["read", "write"])
    assert ana.post("/api/v1/projects", json={"name": "vision"}).status_code == 201
    upload_digits(ana, tmp_path, name="a-personal")
    # What OpenAI's clients send for project="vision", and the server's own header.
    for header in ("OpenAI-Project", "Modelyard-Project"):
        made = ana.post("/api/v1/models", json={"name": f"m-{header}"}, headers={header: "vision"})
        assert made.status_code == 201 and made.json()["project"] == "vision", made.text
    in_vision = ana.get("/api/v1/models", headers={"OpenAI-Project": "vision"}).json()
    assert in_vision["total"] == 2
    assert ana.get("/api/v1/datasets", headers={"OpenAI-Project": "vision"}).json()["total"] == 0
    assert ana.get("/api/v1/datasets").json()["total"] == 1
    # A project the caller is not in does not exist for it; a bound key stays in its own.
    assert eve.get("/api/v1/models", headers={"OpenAI-Project": "vision"}).status_code == 404
    assert ana.get("/api/v1/models", headers={"OpenAI-Project": "nope"}).status_code == 404
    bound = _bound(ana, "ana", ["read"])
    assert bound.get("/api/v1/models", headers={"OpenAI-Project": "vision"}).status_code == 403
