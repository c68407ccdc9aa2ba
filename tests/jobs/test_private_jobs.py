"""Private train jobs through the API: the guarantee on the version, ε in the job's events and
progress, a data set's privacy budget and its ledger, layers Opacus cannot train refused, and a
private job killed with the server resuming to the same ε."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import user_client
from tests.jobs.conftest import train_body, wait_event, wait_for
from tests.support.data import digits_npz
from tests.support.process import server_process
from tests.support.server import ADMIN_KEY

BUDGET = "/api/v1/datasets/digits/privacy-budget"


def _private(epsilon: float, **overrides: Any) -> dict[str, Any]:
    return train_body(
        batch_size=256,
        privacy={"target_epsilon": epsilon, "target_delta": 1e-5},
        **overrides,
    )


def _jobs(api: httpx.Client) -> int:
    total: int = api.get("/api/v1/jobs").json()["total"]
    return total


def _opacus_epsilon(privacy: dict[str, Any]) -> float:
    from opacus.accountants import PRVAccountant

    accountant = PRVAccountant()
    accountant.history = [(privacy["noise_multiplier"], privacy["sample_rate"], privacy["steps"])]
    return float(accountant.get_epsilon(delta=privacy["delta"]))


def test_a_budget_refuses_what_would_overspend_it_and_lets_what_fits_run(
    api: httpx.Client,
) -> None:
    assert api.get(BUDGET).json()["budget"] is None
    reply = api.put(BUDGET, json={"epsilon": 4.0, "delta": 1e-4})
    assert reply.status_code == 200, reply.text
    assert reply.json()["left"] == {"epsilon": 4.0, "delta": 1e-4}

    # Without privacy the data set is closed to jobs until its owner opens it.
    before = _jobs(api)
    plain = api.post("/api/v1/jobs", json=train_body())
    assert plain.status_code == 403, plain.text
    assert "privacy budget" in plain.json()["detail"]
    assert _jobs(api) == before

    first = api.post("/api/v1/jobs", json=_private(3.0, output_model="private-a"))
    assert first.status_code in (200, 201, 202), first.text
    reserved = api.get(BUDGET).json()
    assert 2.9 < reserved["spent"]["epsilon"] <= 3.0
    assert reserved["ledger"][0]["status"] == "reserved"

    # ε = 2 no longer fits: refused, saying what is left, and nothing is queued.
    over = api.post("/api/v1/jobs", json=_private(2.0, output_model="private-b"))
    assert over.status_code == 409, over.text
    assert "are left" in over.json()["detail"] and "ε=1" in over.json()["detail"]
    assert _jobs(api) == before + 1

    second = api.post("/api/v1/jobs", json=_private(0.5, output_model="private-c"))
    assert second.status_code in (200, 201, 202), second.text
    for job in (first.json(), second.json()):
        done = wait_for(api, job["id"])
        assert done["status"] == "succeeded", done["error"]
        assert "privacy" in done["metrics"]  # ε spent so far, in the job's progress

    version = api.get("/api/v1/models/private-a/versions/1").json()
    privacy = version["privacy"]
    assert privacy == version["params"]["privacy"]
    assert privacy["delta"] == 1e-5 and privacy["accountant"] == "prv"
    assert privacy["max_grad_norm"] == 1.0 and privacy["noise_multiplier"] > 0
    assert privacy["epsilon"] <= 3.0
    assert privacy["epsilon"] == pytest.approx(_opacus_epsilon(privacy), rel=0.01)
    events = api.get(f"/api/v1/jobs/{first.json()['id']}/events", params={"limit": 500})
    epochs = [e["data"] for e in events.json()["items"] if e["type"] == "epoch"]
    assert epochs and all("epsilon" in e["privacy"] for e in epochs)

    ledger = api.get(BUDGET).json()
    assert [(e["model"], e["version"], e["status"]) for e in ledger["ledger"]] == [
        ("private-a", 1, "spent"),
        ("private-c", 1, "spent"),
    ]
    assert ledger["ledger"][0]["epsilon"] == pytest.approx(privacy["epsilon"])
    assert ledger["left"]["epsilon"] == pytest.approx(4.0 - ledger["spent"]["epsilon"])

    # The owner lowers nothing below what is spent, and can let other jobs in.
    assert api.put(BUDGET, json={"epsilon": 1.0, "delta": 1e-4}).status_code == 409
    opened = api.put(BUDGET, json={"epsilon": 4.0, "delta": 1e-4, "allow_non_private": True})
    assert opened.status_code == 200
    assert api.post("/api/v1/jobs", json=train_body(epochs=1)).status_code in (200, 201, 202)


def test_only_the_owner_sets_a_budget(api: httpx.Client) -> None:
    bob = user_client(api, "bob", ["read", "write"])
    with bob:
        assert bob.put(BUDGET, json={"epsilon": 100.0, "delta": 0.1}).status_code in (403, 404)
        assert bob.get(BUDGET).status_code == 404  # not his to see
    assert api.get(BUDGET).json()["budget"] is None
    unknown = api.put(BUDGET, json={"epsilon": 1.0, "delta": 1e-5, "bogus": 1})
    assert unknown.status_code == 422


def test_layers_opacus_cannot_train_are_refused_before_anything_is_queued(
    api: httpx.Client,
) -> None:
    before = _jobs(api)
    cnn = {
        "arch": "cnn",
        "input_shape": [1, 8, 8],
        "conv": [{"channels": 4, "batch_norm": True}],
    }
    privacy = {"noise_multiplier": 1.0, "target_delta": 1e-5}
    reply = api.post("/api/v1/jobs", json=train_body(model={"spec": cnn}, privacy=privacy))
    assert reply.status_code == 422, reply.text
    assert "'features.0.norm' (BatchNorm2d)" in reply.json()["detail"]
    assert _jobs(api) == before


def test_request_fields_are_checked_and_documented(api: httpx.Client) -> None:
    bad = api.post("/api/v1/jobs", json=_private(3.0) | {"privacy": {"target_delta": 1e-5}})
    assert bad.status_code == 422
    assert "target_epsilon or noise_multiplier" in bad.text
    large = api.post(
        "/api/v1/jobs", json=_private(3.0) | {"privacy": {"target_epsilon": 1, "target_delta": 0.5}}
    )
    assert large.status_code == 422 and "privacy.target_delta" in large.text
    schema = api.get("/openapi.json").json()["components"]["schemas"]
    assert {"target_epsilon", "noise_multiplier", "target_delta", "max_grad_norm"} <= set(
        schema["PrivacyConfig"]["properties"]
    )


ENV = {"MODELYARD_EXECUTOR_SLOTS": "1", "MODELYARD_JOB_HEARTBEAT_TIMEOUT_S": "5"}


@pytest.mark.slow
def test_a_killed_private_job_resumes_to_the_same_epsilon(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    body = train_body(
        epochs=6,
        batch_size=64,
        checkpoint_every_steps=30,
        privacy={"noise_multiplier": 1.1, "target_delta": 1e-5},
    )
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with server_process(data_dir, log, **ENV) as srv:
        api = httpx.Client(base_url=srv.url, headers=auth, timeout=60)
        npz = digits_npz(tmp_path / "digits.npz")
        api.post(
            "/api/v1/datasets",
            params={"name": "digits", "label": "y", "filename": "d.npz"},
            content=npz.read_bytes(),
        ).raise_for_status()
        whole = api.post("/api/v1/jobs", json={**body, "output_model": "whole"}).json()
        assert wait_for(api, whole["id"], timeout=600)["status"] == "succeeded"
        broken = api.post("/api/v1/jobs", json={**body, "output_model": "broken"}).json()
        wait_event(api, broken["id"], "checkpoint")
        srv.kill9()
    with server_process(data_dir, log, **ENV) as srv:
        api = httpx.Client(base_url=srv.url, headers=auth, timeout=60)
        done = wait_for(api, broken["id"], timeout=600)
        assert done["status"] == "succeeded", done["error"]
        assert done["attempt"] == 2
        a = api.get("/api/v1/models/whole/versions/1").json()["privacy"]
        b = api.get("/api/v1/models/broken/versions/1").json()["privacy"]
    assert b["steps"] == a["steps"] == 6 * 23  # 1438 training rows, batches of about 64
    assert b["epsilon"] == a["epsilon"]


def test_a_finetune_job_trains_a_version_privately(api: httpx.Client) -> None:
    base = api.post("/api/v1/jobs", json=train_body(epochs=1, output_model="base"))
    assert wait_for(api, base.json()["id"])["status"] == "succeeded"
    api.put(BUDGET, json={"epsilon": 2.0, "delta": 1e-4}).raise_for_status()
    body = {
        "type": "finetune",
        "source": {"model": "base", "version": 1},
        "dataset": "digits",
        "eval_dataset": "digits",
        "epochs": 2,
        "batch_size": 128,
        "privacy": {"target_epsilon": 1.0, "target_delta": 1e-5},
    }
    # Evaluating on the budgeted data set is not private: its owner must allow it.
    assert api.post("/api/v1/jobs", json=body).status_code == 403
    api.put(
        BUDGET, json={"epsilon": 2.0, "delta": 1e-4, "allow_non_private": True}
    ).raise_for_status()
    job = api.post("/api/v1/jobs", json=body)
    assert job.status_code in (200, 201, 202), job.text
    done = wait_for(api, job.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    privacy = api.get(f"/api/v1/models/base/versions/{done['result']['version']}").json()["privacy"]
    assert 0 < privacy["epsilon"] <= 1.0 and privacy["delta"] == 1e-5
    ledger = api.get(BUDGET).json()["ledger"]
    assert [(e["model"], e["status"]) for e in ledger] == [("base", "spent")]
