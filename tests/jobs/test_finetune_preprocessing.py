"""A fine-tune keeps its parent's input transform (composed: fine-tune x preprocessing)."""

from __future__ import annotations

import httpx

from tests.jobs.conftest import train_body, wait_for


def test_a_fine_tune_inherits_its_parents_preprocessing(api: httpx.Client) -> None:
    base = api.post("/api/v1/jobs", json=train_body(output_model="scaled")).json()
    done = wait_for(api, base["id"])
    assert done["status"] == "succeeded", done["error"]
    parent = api.get("/api/v1/models/scaled/versions/1").json()
    assert parent["params"]["preprocessing"]["scale"] == 0.0625

    # The user leaves preprocessing out, as a user fine-tuning "the same model" would.
    body = train_body(model={"from": "scaled"}, output_model="scaled", epochs=2)
    del body["preprocessing"]
    reply = api.post("/api/v1/jobs", json=body)
    assert reply.status_code == 201, reply.text
    assert reply.json()["spec"]["config"]["preprocessing"]["scale"] == 0.0625
    tuned = wait_for(api, reply.json()["id"])
    assert tuned["status"] == "succeeded", tuned["error"]
    child = api.get("/api/v1/models/scaled/versions/2").json()
    assert child["params"]["preprocessing"]["scale"] == 0.0625
    # Trained on the inputs its weights expect, it is as good as its parent (not ~0.8 loss).
    assert tuned["result"]["metrics"]["val"]["loss"] < 0.3

    # Asking for another input transform than the parent's is refused before queuing.
    other = train_body(
        model={"from": "scaled"}, output_model="scaled", preprocessing={"scale": 1.0}
    )
    refused = api.post("/api/v1/jobs", json=other)
    assert refused.status_code == 422
    assert "preprocessing.scale" in refused.json()["detail"]
