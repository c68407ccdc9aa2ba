"""Schemathesis over the whole OpenAPI document, once with an admin key and once with a
read-only key: every operation, every check, and no answer may be a 5xx or fall outside the
document.

The server holds a model with a version and an alias, a data set and a deployment, so that
generated requests reach past the "not found" answers. Deleting those, or revoking the keys
the test itself uses, is answered on a throwaway instead (see :func:`_spare_own_state`): the
request is still sent and checked, on data that leaves the rest of the run meaningful.

Fuzzing draws its values from the document alone, not from earlier responses: those would
hand it the ids of the test's own keys, and cost minutes on two cores for little more reach.
The seed is fixed, so a run is the same on every machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import Case, HookContext
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events
from schemathesis.engine.recorder import ScenarioRecorder
from schemathesis.schemas import BaseSchema

from modelyard.config import Settings
from tests.support.data import iris_csv, mlp_safetensors
from tests.support.server import LiveServer, live_server

MAX_EXAMPLES = 10
STATEFUL_STEPS = 10
# What a schema-valid write may be answered with besides success. A write's body names things
# that must exist (a data set, a principal, a version) or carries content that no JSON Schema
# describes (a CSV, an artifact, tensors of the right shape); the server refuses those with a
# 4xx naming the problem, never a 5xx. Reads keep the default expectation.
WRITE_ACCEPTED = ["2xx", "400", "401", "403", "404", "409", "413", "415", "422", "429"]
SEED = 20_261_201


@dataclass
class Seeded:
    server: LiveServer
    keys: dict[str, str]
    own_key_ids: set[str]
    spare_key_id: str


OWN_NAMES = {"m", "iris"}
ROLES = ["admin", "read"]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    with live_server(Settings(data_dir=tmp / "data")) as server:
        headers = {"Authorization": f"Bearer {server.admin_key}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as api:
            yield _seed(server, api, tmp)


def _seed(server: LiveServer, api: httpx.Client, tmp: Path) -> Seeded:
    def ok(reply: httpx.Response) -> dict[str, Any]:
        assert reply.is_success, reply.text
        body: dict[str, Any] = reply.json()
        return body

    ok(api.post("/api/v1/models", json={"name": "m", "task": "classification"}))
    weights = mlp_safetensors(tmp / "m.safetensors").read_bytes()
    for parent in ({}, {"parent": 1}):
        ok(
            api.post(
                "/api/v1/models/m/versions",
                params={"filename": "m.safetensors", **parent},
                content=weights,
            )
        )
    ok(api.put("/api/v1/models/m/aliases/production", json={"version": 1}))
    iris = iris_csv(tmp / "iris.csv").read_bytes()
    ok(
        api.post(
            "/api/v1/datasets",
            params={"name": "iris", "label": "species", "filename": "iris.csv"},
            content=iris,
        )
    )
    deployment = ok(api.post("/api/v1/deployments", json={"name": "m", "model": "m"}))
    assert deployment["status"] == "ready", deployment

    read = ok(api.post("/api/v1/keys", json={"name": "fuzz-read", "scopes": ["read"]}))
    own = {read["id"], ok(api.get("/api/v1/whoami"))["key"]["id"]}
    spare = ok(api.post("/api/v1/keys", json={"name": "spare", "scopes": ["read"]}))["id"]
    return Seeded(
        server=server,
        keys={"admin": server.admin_key, "read": read["key"]},
        own_key_ids=own,
        spare_key_id=spare,
    )


def _schema(seeded: Seeded, role: str) -> BaseSchema:
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "suppress-health-check": ["all"],
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
            "phases": {
                "fuzzing": {"extra-data-sources": {"responses": False}},
                "stateful": {"max-steps": STATEFUL_STEPS},
            },
            "checks": {"enabled": True},
            "operations": [
                {
                    "include-method": ["POST", "PUT", "PATCH"],
                    "checks": {"positive_data_acceptance": {"expected-statuses": WRITE_ACCEPTED}},
                }
            ],
            "headers": {"Authorization": f"Bearer {seeded.keys[role]}"},
            "request-timeout": 60,
        }
    )
    schema = schemathesis.openapi.from_url(f"{seeded.server.url}/openapi.json", config=config)

    @schema.hook
    def map_case(_context: HookContext, case: Case) -> Case:
        _spare_own_state(case, seeded)
        return case

    return schema


def _spare_own_state(case: Case, seeded: Seeded) -> None:
    """Point a DELETE at the test's own keys or seeded resources to a throwaway instead."""
    if case.method.upper() != "DELETE" or not case.path_parameters:
        return
    params = case.path_parameters
    if params.get("key_id") in seeded.own_key_ids:
        params["key_id"] = seeded.spare_key_id
    elif params.get("name") in OWN_NAMES and set(params) == {"name"}:
        params["name"] = "scratch"


def _describe(recorder: ScenarioRecorder) -> Iterator[str]:
    for nodes in recorder.checks.values():
        for node in nodes:
            info = node.failure_info
            if info is not None:
                title, message = info.failure.title, info.failure.message
                yield f"{recorder.label}: {title}: {message}\n    {info.code_sample}"


@pytest.mark.parametrize("role", ROLES)
def test_no_server_error_and_no_answer_outside_the_schema(seeded: Seeded, role: str) -> None:
    document = httpx.get(f"{seeded.server.url}/openapi.json").json()
    operations = {f"{m.upper()} {p}" for p, item in document["paths"].items() for m in item}
    failures: list[str] = []
    tested: set[str] = set()
    for event in schemathesis.engine.from_schema(_schema(seeded, role)).execute():
        if isinstance(event, events.ScenarioFinished):
            if event.status is not Status.SKIP:
                tested.add(event.recorder.label)
            failures.extend(_describe(event.recorder))
        elif isinstance(event, events.FuzzScenarioFinished):
            failures.extend(_describe(event.recorder))
        elif isinstance(event, events.NonFatalError):
            failures.append(f"{event.label}: {event.info.title}: {event.info.message}")
        elif isinstance(event, events.FatalError):
            raise event.exception
        elif isinstance(event, events.EngineFinished):
            failures.extend(f"{f.operation}: {f.title}: {f.message}" for f in event.failures)
    assert not failures, "\n".join(sorted(set(failures)))
    assert operations <= tested, sorted(operations - tested)
