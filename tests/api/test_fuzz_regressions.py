"""Inputs that fuzzing found answered with a 500 or outside the OpenAPI document, each now a
4xx problem the document declares; on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from tests.support.data import iris_csv, mlp_safetensors
from tests.support.server import LiveServer, live_server

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
# Numbers no column holds, and digits that str.isdigit() accepts but int() or SQL do not.
HUGE = [str(INT32_MAX + 1), str(INT64_MAX), str(INT64_MAX + 1), "9" * 40]
NOT_ASCII = ["¹", "٣", "１", "²³"]


@pytest.fixture
def server(make_settings: Callable[..., object], database_url: str) -> Iterator[LiveServer]:
    with live_server(make_settings(database_url=database_url)) as srv:  # type: ignore[arg-type]
        yield srv


@pytest.fixture
def sqlite_api(make_settings: Callable[..., object]) -> Iterator[httpx.Client]:
    with live_server(make_settings()) as srv:  # type: ignore[arg-type]
        auth = {"Authorization": f"Bearer {srv.admin_key}"}
        with httpx.Client(base_url=srv.url, headers=auth, timeout=60) as client:
            yield client


@pytest.fixture
def api(server: LiveServer, tmp_path: Path) -> Iterator[httpx.Client]:
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=60) as client:
        assert client.post("/api/v1/models", json={"name": "m"}).status_code == 201
        reply = client.post(
            "/api/v1/models/m/versions",
            params={"filename": "m.safetensors"},
            content=mlp_safetensors(tmp_path / "m.safetensors").read_bytes(),
        )
        assert reply.status_code == 201, reply.text
        yield client


def _problem(reply: httpx.Response, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = reply.json()
    assert body["status"] == status and body["detail"]
    return body


def test_version_numbers_no_column_holds_are_not_found(api: httpx.Client) -> None:
    for ref in HUGE + NOT_ASCII:
        for path in (
            f"/api/v1/models/m/versions/{ref}",
            f"/api/v1/models/m/versions/{ref}/download",
            f"/api/v1/models/m/versions/{ref}/compare/1",
            f"/api/v1/models/m/versions/1/compare/{ref}",
        ):
            assert ref in _problem(api.get(path), 404)["detail"]
        _problem(api.delete(f"/api/v1/models/m/versions/{ref}"), 404)
    assert api.get("/api/v1/models/m/versions/1").json()["version"] == 1
    assert api.get("/api/v1/models/m/versions/001").json()["version"] == 1
    assert api.get("/api/v1/models/m/versions").json()["total"] == 1


def test_parent_and_alias_numbers_are_bounded(api: httpx.Client) -> None:
    for number in HUGE:
        reply = api.post("/api/v1/models/m/versions", params={"parent": number}, content=b"x")
        assert _problem(reply, 422)["errors"][0]["field"] == "parent"
        reply = api.put("/api/v1/models/m/aliases/prod", json={"version": int(number)})
        assert _problem(reply, 422)["errors"][0]["field"] == "version"
    for number in NOT_ASCII:
        reply = api.post("/api/v1/models/m/versions", params={"parent": number}, content=b"x")
        assert _problem(reply, 422)["errors"][0]["field"] == "parent"
    # The largest number a version may have is a number like any other: there is no such one.
    reply = api.post("/api/v1/models/m/versions", params={"parent": INT32_MAX}, content=b"x")
    _problem(reply, 404)
    _problem(api.put("/api/v1/models/m/aliases/prod", json={"version": INT32_MAX}), 404)
    assert api.get("/api/v1/models/m/versions").json()["total"] == 1
    assert api.get("/api/v1/models/m/aliases").json() == {}


def _stream(api: httpx.Client, path: str, last_event_id: str | bytes) -> list[str]:
    headers = {"Accept": "text/event-stream", "Last-Event-ID": last_event_id}
    with api.stream("GET", path, headers=headers) as reply:
        assert reply.status_code == 200
        return [line for line in reply.iter_lines() if line.startswith(("id:", "event:"))]


def test_event_numbers_are_bounded(api: httpx.Client, tmp_path: Path) -> None:
    csv = iris_csv(tmp_path / "iris.csv").read_bytes()
    params = {"name": "iris", "label": "species", "filename": "iris.csv"}
    assert api.post("/api/v1/datasets", params=params, content=csv).status_code == 201
    spec = {"arch": "mlp", "input_shape": [4], "hidden": [8], "num_outputs": 3}
    body = {"type": "train", "model": {"spec": spec}, "dataset": "iris", "epochs": 1}
    job = api.post("/api/v1/jobs", json=body)
    assert job.status_code == 201, job.text
    path = f"/api/v1/jobs/{job.json()['id']}/events"
    assert api.post(f"/api/v1/jobs/{job.json()['id']}/cancel").status_code == 200

    everything = _stream(api, path, "0")
    assert everything[-1] == "event: end" and everything[0].startswith("id: ")
    # Digits that are not ASCII are no event number: the stream starts from the beginning.
    for seen in ("¹", "²³"):
        assert _stream(api, path, seen.encode("latin-1")) == everything
    # A number beyond any event's: nothing more to send but the end.
    for seen in HUGE:
        assert _stream(api, path, seen) == ["event: end"]

    assert api.get(path, params={"after": INT32_MAX}).json() == {"items": [], "total": 0}
    for after in HUGE:
        assert _problem(api.get(path, params={"after": after}), 422)["errors"][0]["field"] == (
            "after"
        )


def test_names_with_a_trailing_newline_are_refused(sqlite_api: httpx.Client) -> None:
    for name in ("m\n", "m\r\n", "\nm"):
        _problem(sqlite_api.post("/api/v1/models", json={"name": name}), 422)
    assert sqlite_api.get("/api/v1/models").json()["total"] == 0


def test_a_405_names_every_method_of_its_path(sqlite_api: httpx.Client) -> None:
    assert sqlite_api.post("/api/v1/models", json={"name": "m"}).status_code == 201
    for method, path, allowed in [
        ("OPTIONS", "/api/v1/models", "GET, POST"),
        ("PUT", "/api/v1/models/m", "DELETE, GET, PATCH"),
        ("TRACE", "/api/v1/models/m/aliases/a", "DELETE, PUT"),
        ("POST", "/healthz", "GET"),
    ]:
        reply = sqlite_api.request(method, path)
        assert _problem(reply, 405)["type"].endswith("/method-not-allowed")
        assert reply.headers["allow"] == allowed
    reply = sqlite_api.request("PATCH", "/v1/files/f")
    assert reply.status_code == 405 and reply.json()["error"]["message"]
    assert reply.headers["allow"] == "DELETE, GET"


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Validator:
    root = {**schema, "components": document["components"]}
    return jsonschema.Draft202012Validator(root)


def test_the_document_declares_the_problems_the_server_answers(sqlite_api: httpx.Client) -> None:
    document = sqlite_api.get("/openapi.json").json()
    assert "HTTPValidationError" not in json.dumps(document)
    problem = _validator(document, {"$ref": "#/components/schemas/Problem"})
    openai = _validator(document, {"$ref": "#/components/schemas/OpenAIError"})
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if not operation.get("security"):
                continue
            responses = operation["responses"]
            missing = {"400", "401", "403", "404", "429"} - set(responses)
            assert not missing, (method, path, missing)
            # OpenAI's routes answer in OpenAI's shape; KServe's explain, also under /v1, and
            # every other route in problem+json.
            openai_shape = path.startswith("/v1/") and not path.endswith(":explain")
            media = "application/json" if openai_shape else "application/problem+json"
            for code, response in responses.items():
                if code == "503" and path.endswith("/ready"):
                    # The readiness probes answer a model still loading as {"name", "ready"}.
                    assert list(response["content"]) == ["application/json"], (method, path)
                elif int(code) >= 400:
                    assert list(response["content"]) == [media], (method, path, code)

    answers = {
        "/api/v1/models?limit=0": 422,
        "/api/v1/models?offset=x": 422,
        "/api/v1/models/nope": 404,
        "/api/v1/models/nope/versions/1": 404,
        "/api/v2": 404,
    }
    for target, status in answers.items():
        reply = sqlite_api.get(target)
        problem.validate(_problem(reply, status))
        declared = document["paths"].get(target.split("?")[0], {}).get("get", {})
        if declared:
            assert str(status) in declared["responses"]
    invalid = _problem(sqlite_api.get("/api/v1/models?limit=0"), 422)
    assert invalid["errors"] == [
        {"field": "limit", "message": "Input should be greater than or equal to 1"}
    ]
    unauthenticated = httpx.get(f"{sqlite_api.base_url}/api/v1/models")
    problem.validate(_problem(unauthenticated, 401))
    assert unauthenticated.headers["www-authenticate"] == "Bearer"
    refused = sqlite_api.post("/v1/chat/completions", json={"model": "nope"})
    assert refused.status_code == 400
    openai.validate(refused.json())


def test_a_nul_in_a_path_or_query_is_a_422_on_every_store(api: httpx.Client) -> None:
    # PostgreSQL cannot compare text with a NUL in it; no name ever holds one.
    for path in (
        "/api/v1/models/a%00b",
        "/api/v1/datasets/a%00b",
        "/api/v1/deployments/a%00b",
        "/v2/models/a%00b/infer",
        "/api/v1/jobs?status=a%00b",
    ):
        method = "POST" if path.endswith("/infer") else "GET"
        reply = api.request(method, path, json={} if method == "POST" else None)
        body = _problem(reply, 422)
        assert "NUL" in body["detail"], path


def test_readiness_of_a_version_not_served_is_a_404(api: httpx.Client) -> None:
    assert api.post("/api/v1/deployments", json={"name": "m", "model": "m"}).status_code == 201
    assert api.get("/v2/models/m/versions/1/ready").json() == {"name": "m", "ready": True}
    for version in ("0", "¹", "9223372036854775808", "2"):
        _problem(api.get(f"/v2/models/m/versions/{version}/ready"), 404)
