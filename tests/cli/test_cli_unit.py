"""Unit tests of the ``modelyard`` CLI: CliRunner, with the SDK client on a MockTransport."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.fake_api import FakeAPI, answer, page, run

WHEN = "2024-05-01T12:00:00+00:00"
OWNER = {"id": "p" * 32, "name": "alice"}
KEY = {
    "id": "k" * 32,
    "name": "laptop",
    "prefix": "my_abcd",
    "scopes": ["read", "write"],
    "principal": OWNER,
    "expires_at": None,
    "revoked_at": None,
    "last_used_at": None,
    "created_at": WHEN,
}
DATASET = {
    "id": "d" * 32,
    "name": "digits",
    "description": "8x8 digits",
    "format": "csv",
    "kind": "table",
    "num_rows": 1797,
    "label": "target",
    "sha256": "0" * 64,
    "size": 2048,
    "owner": OWNER,
    "created_at": WHEN,
    "public": False,
    "schema": {
        "columns": [{"name": "pixel_0", "dtype": "float64"}, {"name": "target", "dtype": "int64"}]
    },
}
MODEL = {
    "id": "m" * 32,
    "name": "mlp",
    "task": "classification",
    "description": "",
    "owner": OWNER,
    "created_at": WHEN,
    "latest_version": 2,
    "aliases": {"production": 1},
    "public": False,
}
VERSION = {
    "id": "v" * 32,
    "model": "mlp",
    "version": 2,
    "format": "safetensors",
    "sha256": "0" * 64,
    "size": 4096,
    "spec": {"arch": "mlp"},
    "signature": None,
    "metrics": {"accuracy": 0.9731},
    "params": {},
    "description": "",
    "lineage": {"dataset": None, "job": None, "parent_version": 1},
    "created_by": OWNER,
    "created_at": WHEN,
}

# -- global options and errors -----------------------------------------------------------


def test_url_and_key_come_from_flags_or_the_environment(api: FakeAPI) -> None:
    api.routes["GET", "/api/v1/keys"] = page()
    assert run("--url", "http://flag:1", "--api-key", "my_flag", "keys", "list").exit_code == 0
    env = {"MODELYARD_URL": "http://env:2", "MODELYARD_API_KEY": "my_env"}
    assert run("keys", "list", env=env).exit_code == 0
    assert run("keys", "list").exit_code == 0
    assert api.connections == [
        ("http://flag:1", "my_flag"),
        ("http://env:2", "my_env"),
        ("http://127.0.0.1:8000", None),
    ]
    assert api.last.url.host == "127.0.0.1"


def test_an_api_error_is_printed_to_stderr_and_exits_1(api: FakeAPI) -> None:
    problem = {
        "type": "https://modelyard.dev/problems/not-found",
        "title": "Not found",
        "status": 404,
        "detail": "no data set named 'nope'",
    }
    api.routes["GET", "/api/v1/datasets/nope"] = answer(404, problem)
    result = run("--api-key", "my_k", "datasets", "show", "nope")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip() == "Error 404: Not found — no data set named 'nope'"


def test_a_401_without_a_key_says_how_to_give_one(api: FakeAPI) -> None:
    api.routes["GET", "/api/v1/models"] = answer(401, {"title": "Unauthenticated"})
    result = run("models", "list")
    assert result.exit_code == 1
    assert "Error 401: Unauthenticated" in result.stderr
    assert "MODELYARD_API_KEY" in result.stderr


def test_an_unreachable_server_exits_1(api: FakeAPI) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    api.routes["GET", "/api/v1/models"] = refuse
    result = run("--url", "http://down:9", "models", "list")
    assert result.exit_code == 1
    assert "cannot reach http://down:9" in result.stderr


def test_usage_errors_exit_2_without_a_request(api: FakeAPI) -> None:
    assert run("keys", "create", "k").exit_code == 2  # no --scope
    assert run("principals", "create", "x", "--kind", "robot").exit_code == 2
    assert run("datasets", "push", "d", "/no/such/file.csv").exit_code == 2
    assert run("models", "alias", "mlp", "prod", "two").exit_code == 2
    assert api.requests == []


def test_the_cli_imports_no_server_or_ml_stack() -> None:
    code = (
        "import sys, modelyard.cli.main\n"
        "print(sorted({'torch', 'fastapi', 'sqlalchemy', 'numpy'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- keys and principals -----------------------------------------------------------------


def test_keys_create_prints_the_secret_alone_on_stdout(api: FakeAPI) -> None:
    api.routes["POST", "/api/v1/keys"] = answer(201, {**KEY, "name": "ci", "key": "my_s3cret"})
    result = run(
        "keys",
        "create",
        "ci",
        "--scope",
        "read",
        "-s",
        "write",
        "--principal",
        "bot",
        "--expires-in-days",
        "30",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "my_s3cret\n"
    assert "shown only this once" in result.stderr
    body = json.loads(api.last.content)
    assert (body["name"], body["scopes"], body["principal"]) == ("ci", ["read", "write"], "bot")
    expires = datetime.fromisoformat(body["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)


def test_keys_list_table_and_json(api: FakeAPI) -> None:
    revoked = {**KEY, "id": "r" * 32, "name": "old", "revoked_at": WHEN}
    api.routes["GET", "/api/v1/keys"] = page(KEY, revoked)
    table = run("keys", "list")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert any("laptop" in ln and "read, write" in ln and "active" in ln for ln in lines)
    assert any("old" in ln and "revoked" in ln for ln in lines)
    # Ids are copied into `keys revoke`, so even a narrow terminal shows them whole.
    assert KEY["id"] in run("keys", "list", env={"COLUMNS": "80"}).stdout
    as_json = run("keys", "list", "--json")
    assert json.loads(as_json.stdout) == [KEY, revoked]


def test_keys_revoke(api: FakeAPI) -> None:
    api.routes["DELETE", "/api/v1/keys/abc"] = lambda _r: httpx.Response(204)
    result = run("keys", "revoke", "abc")
    assert result.exit_code == 0
    assert api.last.method == "DELETE"
    assert "Revoked key abc" in result.stderr


def test_principals_create_and_list(api: FakeAPI) -> None:
    bot = {"id": "b" * 32, "name": "bot", "kind": "service", "is_admin": True, "created_at": WHEN}
    api.routes["POST", "/api/v1/principals"] = answer(201, bot)
    api.routes["GET", "/api/v1/principals"] = page(bot)
    result = run("principals", "create", "bot", "--kind", "service", "--admin")
    assert result.exit_code == 0, result.output
    assert json.loads(api.last.content) == {"name": "bot", "kind": "service", "is_admin": True}
    listing = run("principals", "list")
    assert any(
        "bot" in ln and "service" in ln and "yes" in ln for ln in listing.stdout.splitlines()
    )
    assert json.loads(run("principals", "list", "--json").stdout) == [bot]


# -- data sets ---------------------------------------------------------------------------


def test_datasets_push_one_file(api: FakeAPI, tmp_path: Path) -> None:
    api.routes["POST", "/api/v1/datasets"] = answer(201, DATASET)
    csv = tmp_path / "digits.csv"
    csv.write_text("pixel_0,target\n0.5,3\n")
    result = run(
        "datasets", "push", "digits", str(csv), "--label", "target", "--description", "8x8 digits"
    )
    assert result.exit_code == 0, result.output
    assert dict(api.last.url.params) == {
        "name": "digits",
        "label": "target",
        "description": "8x8 digits",
        "filename": "digits.csv",
    }
    assert api.last.content == csv.read_bytes()
    assert "Pushed digits" in result.stderr
    assert "1,797 rows" in result.stderr


def test_datasets_push_an_idx_pair_and_refuse_three(api: FakeAPI, tmp_path: Path) -> None:
    api.routes["POST", "/api/v1/datasets"] = answer(201, {**DATASET, "format": "idx"})
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.write_bytes(b"\x00\x00\x08\x03")
    labels.write_bytes(b"\x00\x00\x08\x01")
    result = run("datasets", "push", "mnist", str(images), str(labels))
    assert result.exit_code == 0, result.output
    assert api.last.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert api.last.url.params["format"] == "idx"
    before = len(api.requests)
    assert run("datasets", "push", "x", str(images), str(labels), str(images)).exit_code == 2
    assert len(api.requests) == before


def test_datasets_list_and_show(api: FakeAPI) -> None:
    api.routes["GET", "/api/v1/datasets"] = page(DATASET)
    api.routes["GET", "/api/v1/datasets/digits"] = answer(200, DATASET)
    listing = run("datasets", "list")
    assert listing.exit_code == 0
    assert any(
        "digits" in ln and "csv" in ln and "1797" in ln and "2.0 KiB" in ln
        for ln in listing.stdout.splitlines()
    )
    shown = run("datasets", "show", "digits")
    lines = shown.stdout.splitlines()
    assert any("pixel_0" in ln and "float64" in ln for ln in lines)
    assert any("target" in ln and "int64" in ln and "yes" in ln for ln in lines)
    assert json.loads(run("datasets", "show", "digits", "--json").stdout) == DATASET
    assert json.loads(run("datasets", "list", "--json").stdout) == [DATASET]


def test_datasets_show_arrays_schema(api: FakeAPI) -> None:
    arrays = {
        **DATASET,
        "kind": "arrays",
        "label": "y",
        "schema": {
            "arrays": {
                "x": {"dtype": "float32", "shape": [4, 2]},
                "y": {"dtype": "int64", "shape": [4]},
            }
        },
    }
    api.routes["GET", "/api/v1/datasets/xor"] = answer(200, arrays)
    lines = run("datasets", "show", "xor").stdout.splitlines()
    assert any("x" in ln and "float32" in ln and "(4, 2)" in ln for ln in lines)


def test_datasets_rm_and_pull(api: FakeAPI, tmp_path: Path) -> None:
    api.routes["DELETE", "/api/v1/datasets/digits"] = lambda _r: httpx.Response(204)
    api.routes["GET", "/api/v1/datasets/digits/download"] = lambda _r: httpx.Response(
        200, content=b"a,b\n", headers={"Content-Disposition": 'attachment; filename="d.csv"'}
    )
    assert run("datasets", "rm", "digits").exit_code == 0
    assert api.last.method == "DELETE"
    result = run("datasets", "pull", "digits", "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d.csv").read_bytes() == b"a,b\n"


# -- models ------------------------------------------------------------------------------


def test_models_create_and_list(api: FakeAPI) -> None:
    api.routes["POST", "/api/v1/models"] = answer(201, MODEL)
    api.routes["GET", "/api/v1/models"] = page(MODEL)
    assert run("models", "create", "mlp", "--task", "classification").exit_code == 0
    assert json.loads(api.last.content) == {"name": "mlp", "task": "classification"}
    lines = run("models", "list").stdout.splitlines()
    assert any("mlp" in ln and "production=1" in ln for ln in lines)


def test_models_show_has_versions_and_aliases(api: FakeAPI) -> None:
    api.routes["GET", "/api/v1/models/mlp"] = answer(200, MODEL)
    api.routes["GET", "/api/v1/models/mlp/versions"] = page(VERSION)
    result = run("models", "show", "mlp")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(ln.strip() == "Versions" for ln in lines)
    assert any("safetensors" in ln and "accuracy=0.9731" in ln and "4.0 KiB" in ln for ln in lines)
    assert any(ln.strip() == "Aliases" for ln in lines)
    assert any("production" in ln and "1" in ln for ln in lines)
    data = json.loads(run("models", "show", "mlp", "--json").stdout)
    assert data["name"] == "mlp"
    assert data["versions"] == [VERSION]


def test_models_push_with_spec_and_metrics(api: FakeAPI, tmp_path: Path) -> None:
    api.routes["POST", "/api/v1/models/mlp/versions"] = answer(201, VERSION)
    artifact = tmp_path / "model.safetensors"
    artifact.write_bytes(b"weights")
    spec = tmp_path / "spec.json"
    spec.write_text('{"arch": "mlp", "hidden": [8]}')
    result = run(
        "models",
        "push",
        "mlp",
        str(artifact),
        "--spec",
        str(spec),
        "--metrics",
        '{"accuracy": 0.97}',
        "--parent",
        "1",
    )
    assert result.exit_code == 0, result.output
    params = api.last.url.params
    assert json.loads(params["spec"]) == {"arch": "mlp", "hidden": [8]}
    assert json.loads(params["metrics"]) == {"accuracy": 0.97}
    assert (params["filename"], params["parent"]) == ("model.safetensors", "1")
    assert api.last.content == b"weights"
    assert "Pushed mlp v2" in result.stderr


def test_models_push_refuses_bad_metrics_json(api: FakeAPI, tmp_path: Path) -> None:
    artifact = tmp_path / "m.onnx"
    artifact.write_bytes(b"x")
    result = run("models", "push", "mlp", str(artifact), "--metrics", "[1, 2]")
    assert result.exit_code == 2
    assert "JSON object" in result.output
    assert api.requests == []


def test_models_pull_and_alias(api: FakeAPI, tmp_path: Path) -> None:
    api.routes["GET", "/api/v1/models/mlp/versions/2/download"] = lambda _r: httpx.Response(
        200, content=b"w" * 10, headers={"Content-Length": "10"}
    )
    api.routes["PUT", "/api/v1/models/mlp/aliases/production"] = answer(
        200, {"alias": "production", "version": 2}
    )
    target = tmp_path / "out.safetensors"
    result = run("models", "pull", "mlp", "2", "-o", str(target))
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == b"w" * 10
    result = run("models", "alias", "mlp", "production", "2")
    assert result.exit_code == 0, result.output
    assert json.loads(api.last.content) == {"version": 2}


# -- serve -------------------------------------------------------------------------------


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Stand in for modelyard.api.server so the test starts no server."""
    started: list[Any] = []
    module = types.ModuleType("modelyard.api.server")
    module.serve = started.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "modelyard.api.server", module)
    return started


def test_serve_flags_override_the_environment(fake_server: list[Any], tmp_path: Path) -> None:
    env = {"MODELYARD_PORT": "9000", "MODELYARD_HOST": "0.0.0.0"}
    result = run(
        "serve",
        "--port",
        "8123",
        "--data-dir",
        str(tmp_path),
        "--database-url",
        "sqlite:///x.db",
        env=env,
    )
    assert result.exit_code == 0, result.output
    [settings] = fake_server
    assert (settings.host, settings.port) == ("0.0.0.0", 8123)
    assert settings.data_dir == tmp_path
    assert settings.database_url == "sqlite:///x.db"


def test_serve_rejects_bad_settings(fake_server: list[Any]) -> None:
    assert run("serve", "--port", "70000").exit_code == 2
    result = run("serve", env={"MODELYARD_ENCRYPTION_KEY": "too-short"})
    assert result.exit_code == 1
    assert "MODELYARD_ENCRYPTION_KEY" in result.stderr
    assert fake_server == []
