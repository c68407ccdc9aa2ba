"""What a caller learns about other people's resources: only what they may see."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from tests.api.conftest import user_client
from tests.serving.conftest import MLP, deploy, push_catalog
from tests.support.server import LiveServer, live_server

ROW = {"inputs": [[0.0] * 64]}


def test_metrics_name_only_the_deployments_a_caller_may_see(
    server: LiveServer, admin: httpx.Client, tmp_path: Path
) -> None:
    push_catalog(admin, "mlp", MLP, tmp_path)
    deploy(admin, "secret-dep", model="mlp")
    deploy(admin, "open-dep", model="mlp")
    assert admin.put("/api/v1/deployments/open-dep/acl", json={"public": True}).status_code == 200
    for name in ("secret-dep", "open-dep"):
        assert admin.post(f"/api/v1/deployments/{name}/predict", json=ROW).status_code == 200
    anonymous = httpx.get(server.url + "/metrics").text
    assert 'deployment="open-dep"' in anonymous
    assert "secret-dep" not in anonymous
    # A key sees what it may read; a key with the 'metrics' scope sees every deployment.
    reader = user_client(admin, "reader", ["read"])
    assert "secret-dep" not in reader.get("/metrics").text
    watcher = user_client(admin, "watcher", ["metrics"])
    assert 'deployment="secret-dep"' in watcher.get("/metrics").text
    assert 'deployment="secret-dep"' in admin.get("/metrics").text
    # A key that is sent must be valid, even where none is needed.
    bad = httpx.get(server.url + "/metrics", headers={"Authorization": "Bearer my_nope"})
    assert bad.status_code == 401


def test_metrics_can_require_a_key(make_settings: Callable[..., object]) -> None:
    with live_server(make_settings(metrics_require_key=True)) as srv:  # type: ignore[arg-type]
        assert httpx.get(srv.url + "/metrics").status_code == 401
        admin = {"Authorization": f"Bearer {srv.admin_key}"}
        with httpx.Client(base_url=srv.url, headers=admin) as api:
            reader = user_client(api, "reader", ["read"])
            assert reader.get("/metrics").status_code == 403
            watcher = user_client(api, "watcher", ["metrics"])
            assert "modelyard_http_requests_total" in watcher.get("/metrics").text


def test_errors_never_name_the_servers_files(server: LiveServer, admin: httpx.Client) -> None:
    import tempfile

    assert admin.post("/api/v1/models", json={"name": "broken"}).status_code == 201
    roots = [str(server.platform.settings.data_dir.resolve()), tempfile.gettempdir()]
    for filename, body in [
        ("model.onnx", b"\x08\x07\x12\x04fake" + b"\x00" * 64),  # a protobuf ORT cannot load
        ("model.keras", b"PK\x03\x04" + b"\x00" * 64),
        ("model.pt", b"PK\x03\x04not a torchscript zip"),
        ("model.safetensors", b'\x10\x00\x00\x00\x00\x00\x00\x00{"a":1}'),
    ]:
        reply = admin.post(
            "/api/v1/models/broken/versions", params={"filename": filename}, content=body
        )
        assert 400 <= reply.status_code < 500, (filename, reply.text)
        detail = reply.json()["detail"]
        assert not any(root in detail for root in roots), (filename, detail)
        assert ".part" not in detail and "proc-" not in detail, (filename, detail)


def test_paths_under_the_servers_folders_are_cut_from_messages() -> None:
    from modelyard.errors import without_paths

    text = "Load model from /srv/data/tmp/proc-1/artifact-x/model.onnx failed: '/tmp/a.part' (x)"
    assert without_paths(text, ["/srv/data", "/tmp"]) == (
        "Load model from <server file> failed: '<server file>' (x)"
    )
    assert without_paths("no path here /usr/lib", ["/srv/data"]) == "no path here /usr/lib"
