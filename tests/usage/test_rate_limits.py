"""Requests per minute per key and per project (the stricter wins), per deployment, set at
run time through the API; a refusal is a 429 with Retry-After and OpenAI's headers."""

from __future__ import annotations

import httpx

from tests.support.server import LiveServer
from tests.usage.conftest import make_key, predict

HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)


def test_a_key_limited_to_5_a_minute_gets_5_answers_then_429s(
    served: LiveServer, admin: httpx.Client
) -> None:
    key = make_key(admin, "alice", ["infer", "read"])
    reply = admin.put(f"/api/v1/limits/keys/{key.id}", json={"requests_per_minute": 5})
    assert reply.status_code == 200, reply.text
    assert reply.json()["requests_per_minute"] == 5
    with key.client(served.url) as alice:
        answers = [predict(alice) for _ in range(5)]
        assert [r.status_code for r in answers] == [200] * 5
        assert [r.headers["x-ratelimit-remaining-requests"] for r in answers] == [
            "4",
            "3",
            "2",
            "1",
            "0",
        ]
        refused = predict(alice)
        assert refused.status_code == 429, refused.text
        for name in HEADERS:
            assert name in refused.headers
        assert refused.headers["x-ratelimit-limit-requests"] == "5"
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.json()["type"].endswith("/rate-limited")
        assert "5 requests per minute" in refused.json()["detail"]
        # Other keys are not limited by alice's limit.
        assert predict(admin).status_code == 200
        # Raising the limit takes effect at once on this server.
        assert (
            admin.put(f"/api/v1/limits/keys/{key.id}", json={"requests_per_minute": 100})
        ).status_code == 200
        assert predict(alice).status_code == 200


def test_the_stricter_of_key_and_project_limits_wins_and_deployments_have_their_own(
    served: LiveServer, admin: httpx.Client
) -> None:
    key = make_key(admin, "bob", ["infer", "read"])
    project_name = _project_of(served, key.id)
    admin.put(f"/api/v1/limits/keys/{key.id}", json={"requests_per_minute": 10}).raise_for_status()
    reply = admin.put(
        f"/api/v1/limits/projects/{project_name}",
        json={"requests_per_minute": 3, "deployments": {"mlp2": {"requests_per_minute": 1}}},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["deployments"] == {
        "mlp2": {"requests_per_minute": 1, "tokens_per_minute": None}
    }
    with key.client(served.url) as bob:
        assert predict(bob, "mlp2").status_code == 200
        assert predict(bob, "mlp2").status_code == 429  # the deployment's 1 a minute
        # The refused call gave back what it took from the other limits: the project's
        # 3 a minute have 2 left.
        assert predict(bob).status_code == 200
        assert predict(bob).status_code == 200
        refused = predict(bob)
        assert refused.status_code == 429
        assert "project" in refused.json()["detail"]
        assert refused.headers["x-ratelimit-limit-requests"] == "3"


def test_limits_are_read_by_admins_and_set_only_by_admins_or_project_owners(
    served: LiveServer, admin: httpx.Client
) -> None:
    key = make_key(admin, "carol", ["infer", "read", "write", "keys"])
    other = make_key(admin, "dave", ["infer", "read", "write"])
    with key.client(served.url) as carol:
        # Carol owns her personal project: she may set its limits, not those of her key's
        # principal elsewhere or of someone else's key.
        mine = _project_of(served, key.id)
        assert (
            carol.put(
                f"/api/v1/limits/projects/{mine}", json={"requests_per_minute": 50}
            ).status_code
            == 200
        )
        assert carol.get(f"/api/v1/limits/projects/{mine}").json()["requests_per_minute"] == 50
        assert carol.get(f"/api/v1/limits/keys/{other.id}").status_code == 404
        assert (
            carol.put(
                f"/api/v1/limits/keys/{other.id}", json={"requests_per_minute": 1}
            ).status_code
            == 404
        )
        theirs = _project_of(served, other.id)
        assert (
            carol.put(
                f"/api/v1/limits/projects/{theirs}", json={"requests_per_minute": 1}
            ).status_code
            == 404
        )
    assert (
        admin.put(f"/api/v1/limits/keys/{key.id}", json={"requests_per_minute": -1}).status_code
        == 422
    )
    assert admin.put(f"/api/v1/limits/keys/{key.id}", json={"rpm": 1}).status_code == 422
    assert admin.delete(f"/api/v1/limits/keys/{key.id}").status_code == 204
    assert admin.get(f"/api/v1/limits/keys/{key.id}").json()["requests_per_minute"] is None


def _project_of(served: LiveServer, key_id: str) -> str:
    from modelyard.db.tables import ApiKey, Project

    with served.platform.db.session() as session:
        key = session.get(ApiKey, key_id)
        assert key is not None
        project_id = key.project_id
        if project_id is None:
            from modelyard.auth.projects import personal_project_id

            project_id = personal_project_id(session, key.principal_id)
        project = session.get(Project, project_id)
        assert project is not None
        return project.name
