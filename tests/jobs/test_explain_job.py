"""The explain job: global feature importance of a trained table model, stored on its
version with the data set's column names."""

from __future__ import annotations

from pathlib import Path

import httpx

from modelyard.client import Client
from tests.jobs.conftest import wait_for
from tests.support.data import iris_csv

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def test_an_explain_job_stores_feature_importance_on_the_version(
    api: httpx.Client, tmp_path: Path
) -> None:
    csv = iris_csv(tmp_path / "iris.csv")
    reply = api.post(
        "/api/v1/datasets",
        params={"name": "iris", "label": "species", "filename": "iris.csv"},
        content=csv.read_bytes(),
    )
    assert reply.status_code == 201, reply.text
    train = {
        "type": "train",
        "model": {"spec": {"arch": "mlp", "hidden": [16]}},
        "dataset": "iris",
        "output_model": "iris-mlp",
        "epochs": 5,
        "preprocessing": {"standardize": True},
    }
    trained = wait_for(api, api.post("/api/v1/jobs", json=train).json()["id"])
    assert trained["status"] == "succeeded", trained

    explain = {
        "type": "explain",
        "source": {"model": "iris-mlp", "version": 1},
        "dataset": "iris",
        "method": "integrated_gradients",
        "rows": 40,
    }
    too_many = api.post("/api/v1/jobs", json={**explain, "rows": 10**6})
    assert too_many.status_code == 422 and "rows" in too_many.text
    key = api.headers["Authorization"].removeprefix("Bearer ")
    with Client(str(api.base_url), key) as client:
        job = client.jobs.explain(
            "iris-mlp", 1, "iris", method="integrated_gradients", rows=40
        ).wait(timeout=300)
    assert job.status == "succeeded", job.raw
    assert job.result["feature_importance"]["features"] == FEATURES

    version = api.get("/api/v1/models/iris-mlp/versions/1").json()
    stored = version["params"]["feature_importance"]["integrated_gradients"]
    assert stored["features"] == FEATURES
    assert stored["rows"] == 40 and len(stored["mean_abs"]) == 4
    assert all(v >= 0 for v in stored["mean_abs"]) and max(stored["mean_abs"]) > 0


def test_a_train_job_records_its_feature_columns_and_explanations_name_them(
    api: httpx.Client, tmp_path: Path
) -> None:
    """The version records the columns it reads, in order: every column but the label by
    default, or the ones the job chose. Jobs on the version read those columns, and an
    explanation names them (inferring "every column but the label" would give four columns
    to a model that reads two)."""
    csv = iris_csv(tmp_path / "iris.csv")
    reply = api.post(
        "/api/v1/datasets",
        params={"name": "iris-cols", "label": "species", "filename": "iris.csv"},
        content=csv.read_bytes(),
    )
    assert reply.status_code == 201, reply.text
    base = {
        "type": "train",
        "model": {"spec": {"arch": "mlp", "hidden": [8]}},
        "dataset": "iris-cols",
        "epochs": 40,
        "preprocessing": {"standardize": True},
        "optimizer": {"name": "adam", "lr": 0.02},
    }
    chosen = ["petal_width", "sepal_length"]
    for name, extra in (("iris-all", {}), ("iris-two", {"features": chosen})):
        body = {**base, "output_model": name, **extra}
        trained = wait_for(api, api.post("/api/v1/jobs", json=body).json()["id"])
        assert trained["status"] == "succeeded", trained
    everything = api.get("/api/v1/models/iris-all/versions/1").json()
    assert everything["params"]["features"] == FEATURES
    two = api.get("/api/v1/models/iris-two/versions/1").json()
    assert two["params"]["features"] == chosen

    explain = {
        "type": "explain",
        "source": {"model": "iris-two", "version": 1},
        "dataset": "iris-cols",
        "method": "occlusion",
        "rows": 16,
    }
    job = wait_for(api, api.post("/api/v1/jobs", json=explain).json()["id"])
    assert job["status"] == "succeeded", job
    assert job["result"]["feature_importance"]["features"] == chosen
    assert len(job["result"]["feature_importance"]["mean_abs"]) == 2

    evaluate = {
        "type": "evaluate",
        "source": {"model": "iris-two", "version": 1},
        "eval_dataset": "iris-cols",
    }
    evaluated = wait_for(api, api.post("/api/v1/jobs", json=evaluate).json()["id"])
    assert evaluated["status"] == "succeeded", evaluated
    assert evaluated["result"]["metrics"]["eval"]["accuracy"] > 0.5
