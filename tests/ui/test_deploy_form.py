"""The dashboard's deploy form, through plain HTTP: a deployment made there is stored and
served, its page offers an example input, and a taken name is refused."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.data import mlp_safetensors, spec_json
from tests.support.server import LiveServer
from tests.ui.conftest import csrf_of, signed_in


def test_the_deploy_form_stores_and_serves_a_deployment(
    server: LiveServer, admin: httpx.Client, tmp_path: Path
) -> None:
    weights = mlp_safetensors(tmp_path / "m.safetensors")
    reply = admin.post(
        "/api/v1/models/form-model/versions",
        params={"format": "safetensors", "spec": spec_json()},
        content=weights.read_bytes(),
    )
    assert reply.status_code == 201, reply.text

    with signed_in(server.url, server.admin_key) as ui:
        token = csrf_of(ui.get("/ui/deployments").text)
        form = {"csrf": token, "name": "form-deploy", "model": "form-model", "version": "1"}
        reply = ui.post("/ui/deployments", data=form)
        assert reply.status_code == 303, reply.text
        assert reply.headers["location"].endswith("/ui/deployments/form-deploy")

        stored = admin.get("/api/v1/deployments/form-deploy").json()
        assert stored["status"] == "ready" and stored["spec"]["version"] == "1"
        assert [v["version"] for v in stored["versions"]] == [1]
        page = ui.get("/ui/deployments/form-deploy")
        assert page.status_code == 200 and "form-deploy" in page.text
        assert "[[0" in page.text.replace(" ", "")  # the example input, one row of zeros

        again = ui.post("/ui/deployments", data=form)
        assert again.status_code == 409, again.text
    reply = admin.get("/api/v1/deployments", params={"limit": 100})
    assert [d["name"] for d in reply.json()["items"]].count("form-deploy") == 1
