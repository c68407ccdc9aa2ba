"""The seeds' own call, sent with ``requests`` as a first script would send it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from tests.jobs.conftest import upload_digits, wait_for
from tests.support.server import LiveServer

SEEDS_CALL = {
    "model_name": "MyModel",
    "data": "input_data",
    "optimizer": "Adam",
    "learning_rate": 0.001,
    "epochs": 1000,
}


@pytest.fixture
def input_data(api: httpx.Client, tmp_path: Path) -> None:
    upload_digits(api, tmp_path, "input_data")


def _auth(server: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.admin_key}"}


@pytest.mark.usefixtures("input_data")
def test_the_seeds_call_trains_and_fine_tunes_by_name(
    server: LiveServer, api: httpx.Client
) -> None:
    url = server.url
    # A name that is neither a model nor an architecture is refused in the caller's terms.
    response = requests.post(
        url + "/train_model", params=SEEDS_CALL, headers=_auth(server), timeout=60
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "model_name" in detail and "MyModel" in detail and "model.from" not in detail

    # An architecture by name (any case) trains a first model, with hidden layers and a
    # validation curve; with wait, the reply is the finished job with its metrics.
    first = {**SEEDS_CALL, "model_name": "MLP", "output_model": "MyModel", "epochs": 3}
    response = requests.post(
        url + "/train_model",
        params={**first, "preprocessing": '{"scale": 0.0625}', "wait": 120},
        headers=_auth(server),
        timeout=180,
    )
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    assert job["status"] == "succeeded", job["error"]
    assert response.headers["Preference-Applied"] == "wait=120"
    assert job["spec"]["arch_spec"]["hidden"] == [128, 64]
    assert job["spec"]["config"]["optimizer"]["name"] == "adam"
    assert job["result"]["model"] == "MyModel" and job["result"]["version"] == 1
    assert job["result"]["metrics"]["val"]["accuracy"] > 0.8

    # Now the seeds' call, verbatim: it trains MyModel further into a new version.
    response = requests.post(
        url + "/train_model", params=SEEDS_CALL, headers=_auth(server), timeout=60
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] in ("queued", "running")
    assert job["spec"]["init"]["model"] == "MyModel" and job["spec"]["init"]["version"] == 1
    assert job["spec"]["output_model"] == "MyModel"
    assert job["spec"]["config"]["epochs"] == 1000
    cancelled = api.post(f"/api/v1/jobs/{job['id']}/cancel").json()
    assert wait_for(api, cancelled["id"])["status"] == "cancelled"


@pytest.mark.usefixtures("input_data")
def test_form_fields_json_and_prefer_wait(server: LiveServer) -> None:
    fields = {
        "model_name": "mlp",
        "data": "input_data",
        "optimizer": "SGD",
        "learning_rate": 0.05,
        "epochs": 1,
        "output_model": "formed",
    }
    response = requests.post(
        server.url + "/train_model",
        data=fields,
        headers={**_auth(server), "Prefer": "wait=120"},
        timeout=180,
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "succeeded", response.json()["error"]
    assert response.json()["spec"]["config"]["optimizer"]["name"] == "sgd"
    gd = {**fields, "optimizer": "GD", "output_model": "full-batch"}
    response = requests.post(server.url + "/train_model", json=gd, headers=_auth(server))
    assert response.status_code == 201, response.text
    config = response.json()["spec"]["config"]
    assert config["optimizer"]["name"] == "gd" and config["batch_size"] is None
    twice = requests.post(
        server.url + "/train_model",
        params={"epochs": 2},
        json=fields,
        headers=_auth(server),
    )
    assert twice.status_code == 422 and "epochs" in twice.json()["detail"]


@pytest.mark.parametrize("name", ["Adam", "SGD", "GD", "AdamW", "RMSprop"])
def test_optimizer_names_are_case_insensitive_on_the_jobs_route(
    api: httpx.Client, name: str
) -> None:
    body = {"model_name": "mlp", "data": "digits", "optimizer": name, "learning_rate": 0.01}
    reply = api.post("/api/v1/jobs", json={**body, "epochs": 1})
    assert reply.status_code == 201, reply.text
    assert reply.json()["spec"]["config"]["optimizer"]["name"] == name.lower()
    api.post(f"/api/v1/jobs/{reply.json()['id']}/cancel")
