"""The dashboard's security: escaping, CSRF, one user's private resources hidden from another
on every page, and sessions that end with their key."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from modelyard.api.policy import ROUTES, Auth
from tests.jobs.conftest import upload_digits, wait_for
from tests.support.data import mlp_safetensors, spec_json
from tests.support.server import LiveServer
from tests.ui.conftest import csrf_of, new_user, shot, signed_in

SCRIPT = "<script>alert(1)</script>"
A_NAMES = ("alice-digits", "alice-model", "alice-deploy")


@pytest.fixture(scope="module")
def alice(
    server: LiveServer, admin: httpx.Client, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """User A's private data set, model (a pushed version), job and deployment; the data set
    and the model are described with a script tag."""
    key = new_user(admin, "alice", ["read", "write", "infer", "keys"])
    work = tmp_path_factory.mktemp("alice")
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as api:
        upload_digits(api, work, name="alice-digits")
        reply = api.post(
            "/api/v1/datasets",
            params={"name": "alice-iris", "description": SCRIPT, "filename": "i.csv"},
            content=b"a,b,species\n1.0,2.0,0\n3.0,4.0,1\n",
        )
        assert reply.status_code == 201, reply.text
        weights = mlp_safetensors(work / "m.safetensors")
        reply = api.post(
            "/api/v1/models/alice-model/versions",
            params={"format": "safetensors", "spec": spec_json()},
            content=weights.read_bytes(),
        )
        assert reply.status_code == 201, reply.text
        assert api.patch("/api/v1/models/alice-model", json={"description": SCRIPT}).is_success
        reply = api.post(
            "/api/v1/deployments", json={"name": "alice-deploy", "model": "alice-model"}
        )
        assert reply.status_code == 201, reply.text
        job = api.post(
            "/api/v1/jobs",
            json={"model_name": "mlp", "data": "alice-digits", "epochs": 1, "learning_rate": 0.01},
        )
        assert job.status_code == 201, job.text
        job_id = job.json()["id"]
        wait_for(api, job_id)
        keys = api.get("/api/v1/keys").json()["items"]
    return {"key": key, "job": job_id, "key_id": keys[0]["id"]}


def test_free_text_renders_as_text(
    browser: Browser, server: LiveServer, alice: dict[str, str]
) -> None:
    with signed_in(server.url, alice["key"]) as client:
        for path in (
            "/ui/datasets",
            "/ui/datasets/alice-iris",
            "/ui/models",
            "/ui/models/alice-model",
        ):
            html = client.get(path).text
            assert SCRIPT not in html, path
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
        cookie = client.cookies.get("modelyard_session")
    context = browser.new_context()
    dialogs: list[str] = []
    try:
        host = re.sub(r"^http://|:\d+$", "", server.url)
        context.add_cookies(
            [{"name": "modelyard_session", "value": cookie, "domain": host, "path": "/ui"}]
        )
        page = context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        for path in ("/ui/datasets/alice-iris", "/ui/models/alice-model"):
            page.goto(f"{server.url}{path}")
            expect(page.locator(".description")).to_have_text(SCRIPT)
        shot(page, "escaped")
    finally:
        context.close()
    assert dialogs == []


def _session_posts() -> list[str]:
    return [t for (m, t), rule in ROUTES.items() if m == "POST" and rule.auth is Auth.SESSION]


def test_every_form_without_its_csrf_token_is_refused(
    server: LiveServer, admin: httpx.Client, alice: dict[str, str]
) -> None:
    posts = _session_posts()
    assert len(posts) >= 5
    with signed_in(server.url, server.admin_key) as client:
        for template in posts:
            path = re.sub(r"\{[^}]+\}", "zz-none", template)
            for data in ({}, {"csrf": "wrong"}):
                reply = client.post(path, data=data)
                assert reply.status_code == 403, (template, data, reply.status_code)
        # The same forms with the token get past the check (here: to "not found").
        token = csrf_of(client.get("/ui/keys").text)
        assert client.post("/ui/jobs/zz-none/cancel", data={"csrf": token}).status_code == 404
        assert client.get("/ui").status_code == 200  # still signed in
    anonymous = httpx.Client(base_url=server.url)
    page = anonymous.get("/ui/login")
    assert page.status_code == 200
    reply = anonymous.post("/ui/login", data={"key": server.admin_key, "csrf": "forged"})
    assert reply.status_code == 403
    assert "modelyard_session" not in reply.cookies


def test_another_user_sees_none_of_a_users_private_resources(
    server: LiveServer, admin: httpx.Client, alice: dict[str, str]
) -> None:
    bob_key = new_user(admin, "bob", ["read", "write", "infer", "keys"])
    secrets = [*A_NAMES, "alice-iris", alice["job"], alice["job"][:12], alice["key_id"], "alice"]
    values = {
        "name": "alice-model",
        "job_id": alice["job"],
        "ref": "1",
        "key_id": alice["key_id"],
        "file": "app.css",
    }
    detail_paths = {
        "/ui/datasets/{name}": "/ui/datasets/alice-digits",
        "/ui/deployments/{name}": "/ui/deployments/alice-deploy",
        "/ui/deployments/{name}/load": "/ui/deployments/alice-deploy/load",
    }
    walked = 0
    with signed_in(server.url, bob_key) as bob:
        for (method, template), rule in ROUTES.items():
            if method != "GET" or rule.auth is not Auth.SESSION:
                continue
            path = detail_paths.get(template) or re.sub(
                r"\{(\w+)\}", lambda m: values[m.group(1)], template
            )
            if path.endswith("/compare"):
                path += "?a=1&b=1"
            reply = bob.get(path)
            walked += 1
            if "{" in template:
                # Told exactly what a name that does not exist is told.
                assert reply.status_code == 404, (path, reply.status_code)
                ident = path.split("/")[3]
                nothing = bob.get(path.replace(ident, "zz-none"))
                text = reply.text.replace(ident, "zz-none")
                assert (nothing.status_code, nothing.text) == (404, text), path
            else:
                assert reply.status_code == 200, (path, reply.status_code)
                for secret in secrets:
                    assert secret not in reply.text, (path, secret)
        # Forms too: bob can neither cancel alice's job nor predict with her deployment.
        token = csrf_of(bob.get("/ui/keys").text)
        assert bob.post(f"/ui/jobs/{alice['job']}/cancel", data={"csrf": token}).status_code == 404
        reply = bob.post(
            "/ui/deployments/alice-deploy/predict", data={"csrf": token, "inputs": "[[0,0,0,0]]"}
        )
        assert "alice-deploy" not in reply.text or reply.status_code == 404
        assert "outputs" not in reply.text
        reply = bob.post(f"/ui/keys/{alice['key_id']}/revoke", data={"csrf": token})
        assert reply.status_code == 404
    assert walked >= 12
    # Alice herself sees them (so the walk above could have found them).
    with signed_in(server.url, alice["key"]) as own:
        assert "alice-model" in own.get("/ui/models").text
        assert own.get(f"/ui/jobs/{alice['job']}").status_code == 200


def test_a_revoked_keys_session_ends(server: LiveServer, admin: httpx.Client) -> None:
    key = new_user(admin, "carol", ["read", "keys"])
    with signed_in(server.url, key) as carol:
        assert carol.get("/ui/jobs").status_code == 200
        listed = httpx.get(
            f"{server.url}/api/v1/keys", headers={"Authorization": f"Bearer {key}"}
        ).json()["items"]
        key_id = listed[0]["id"]
        assert admin.delete(f"/api/v1/keys/{key_id}").status_code == 204
        reply = carol.get("/ui/jobs")
        assert reply.status_code == 303
        assert reply.headers["location"].startswith("/ui/login")


def test_static_files_and_headers(server: LiveServer) -> None:
    with signed_in(server.url, server.admin_key) as client:
        page = client.get("/ui")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        for src in re.findall(r'src="([^"]+)"', page.text):
            assert src.startswith("/ui/static/"), src
            assert client.get(src).status_code == 200
    assert httpx.get(f"{server.url}/ui/static/..%2Fsessions.py").status_code == 404
    assert httpx.get(f"{server.url}/ui/static/README.md").status_code == 404
    assert Path(__file__).exists()


def test_lists_are_filtered_and_paged_on_the_server(
    server: LiveServer, alice: dict[str, str]
) -> None:
    with signed_in(server.url, alice["key"]) as client:
        page = client.get("/ui/datasets", params={"q": "iris"}).text
        assert "alice-iris" in page and "alice-digits" not in page
        assert "alice-" not in client.get("/ui/datasets", params={"q": "%"}).text
        assert "alice-model" in client.get("/ui/models", params={"q": "model"}).text
        assert "alice-model" not in client.get("/ui/models", params={"q": "nothing"}).text
        assert "alice-deploy" in client.get("/ui/deployments", params={"q": "deploy"}).text
        one = client.get("/ui/datasets", params={"size": 10, "page": 2}).text
        assert "page 2 of 1" in one and "alice-" not in one
        # A page size that is not offered is the default one, never an unbounded page.
        assert "page 1 of 1" in client.get("/ui/jobs", params={"size": 10**6}).text
        usage = client.get("/ui/usage", params={"days": 7})
        assert usage.status_code == 200 and "<h1>Usage</h1>" in usage.text
        assert client.get("/ui/usage", params={"days": 1000}).status_code == 422
