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


def test_freeze_counts_where_the_docs_write_it_and_unknown_fields_are_refused(
    api: httpx.Client,
) -> None:
    base = api.post("/api/v1/jobs", json=train_body(output_model="frozen")).json()
    assert wait_for(api, base["id"])["status"] == "succeeded"
    # freeze inside model, as docs/api.md shows it, is the same as freeze beside it.
    inside = train_body(model={"from": "frozen", "freeze": ["layers.0"]}, output_model="frozen")
    reply = api.post("/api/v1/jobs", json=inside)
    assert reply.status_code == 201, reply.text
    assert reply.json()["spec"]["config"]["freeze"] == ["layers.0"]
    api.post(f"/api/v1/jobs/{reply.json()['id']}/cancel")
    # An unknown field in model is named, not dropped.
    bogus = api.post("/api/v1/jobs", json=train_body(model={"from": "frozen", "bogus": 1}))
    assert bogus.status_code == 422 and "model.bogus" in bogus.json()["detail"]
    spec_bogus = train_body(model={"spec": {"arch": "mlp"}, "bogus": 1})
    reply = api.post("/api/v1/jobs", json=spec_bogus)
    assert reply.status_code == 422 and "model.bogus" in reply.json()["detail"]
    # A prefix that matches no parameter is refused before anything is queued.
    before = api.get("/api/v1/jobs").json()["total"]
    nothing = train_body(model={"from": "frozen", "freeze": ["encoder"]}, output_model="frozen")
    reply = api.post("/api/v1/jobs", json=nothing)
    assert reply.status_code == 422 and "encoder" in reply.json()["detail"]
    assert api.get("/api/v1/jobs").json()["total"] == before


def test_a_fine_tune_into_another_model_records_its_real_parent(api: httpx.Client) -> None:
    base = api.post("/api/v1/jobs", json=train_body(output_model="source")).json()
    assert wait_for(api, base["id"])["status"] == "succeeded"
    # Into a new model name: it trains, registers, and names its parent in the source model.
    into_new = train_body(model={"from": "source"}, output_model="brand-new-ft", epochs=1)
    job = api.post("/api/v1/jobs", json=into_new).json()
    done = wait_for(api, job["id"])
    assert done["status"] == "succeeded", done["error"]
    child = api.get("/api/v1/models/brand-new-ft/versions/1").json()
    assert child["lineage"]["parent_model"] == "source"
    assert child["lineage"]["parent_version"] == 1
    assert child["params"]["preprocessing"]["scale"] == 0.0625
    # Into an existing other model with versions of its own: the parent is still source v1.
    other = api.post("/api/v1/jobs", json=train_body(output_model="other", epochs=1)).json()
    assert wait_for(api, other["id"])["status"] == "succeeded"
    job = api.post("/api/v1/jobs", json={**into_new, "output_model": "other"}).json()
    assert wait_for(api, job["id"])["status"] == "succeeded"
    second = api.get("/api/v1/models/other/versions/2").json()
    assert (second["lineage"]["parent_model"], second["lineage"]["parent_version"]) == (
        "source",
        1,
    )
    # A version made within one model names that model as its parent's.
    job = api.post(
        "/api/v1/jobs", json={**into_new, "output_model": "source", "model": {"from": "source"}}
    ).json()
    assert wait_for(api, job["id"])["status"] == "succeeded"
    own = api.get("/api/v1/models/source/versions/2").json()["lineage"]
    assert (own["parent_model"], own["parent_version"]) == ("source", 1)
