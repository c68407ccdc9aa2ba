"""The seeds' Keras model, which ends in softmax, through the API: its version records
probabilities, and evaluate, finetune and distill jobs measure and train on them as Keras
does (see :mod:`tests.support.keras_seeds`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelyard.registry.keras import keras_module
from tests.jobs.conftest import wait_for
from tests.support.keras_seeds import SeedsModels, keras_loss, train_seeds_models


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> SeedsModels:
    """Trained before any server starts: its warm-up imports torch in a thread."""
    return train_seeds_models(tmp_path_factory.mktemp("keras-seeds"))


def _dataset(api: httpx.Client, name: str, x: np.ndarray, y: np.ndarray, tmp: Path) -> None:
    path = tmp / f"{name}.npz"
    np.savez(path, x=x, y=y)
    reply = api.post(
        "/api/v1/datasets",
        params={"name": name, "label": "y", "filename": path.name},
        content=path.read_bytes(),
    )
    assert reply.status_code == 201, reply.text


def _version(api: httpx.Client, model: str, path: Path, **params: Any) -> dict[str, Any]:
    if api.get(f"/api/v1/models/{model}").status_code == 404:
        api.post("/api/v1/models", json={"name": model}).raise_for_status()
    query = {"filename": path.name}
    if params:
        query["params"] = json.dumps(params)
    reply = api.post(f"/api/v1/models/{model}/versions", params=query, content=path.read_bytes())
    assert reply.status_code == 201, reply.text
    version: dict[str, Any] = reply.json()
    return version


@pytest.fixture
def digits(api: httpx.Client, seeds: SeedsModels, tmp_path: Path) -> httpx.Client:
    """The live API with the seeds' split as ``unit-train`` and ``unit-test``."""
    _dataset(api, "unit-train", seeds.x_train, seeds.y_train, tmp_path)
    _dataset(api, "unit-test", seeds.x_test, seeds.y_test, tmp_path)
    return api


def _run(api: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    reply = api.post("/api/v1/jobs", json=body)
    assert reply.status_code == 201, reply.text
    done = wait_for(api, reply.json()["id"], timeout=600)
    assert done["status"] == "succeeded", done["error"]
    result: dict[str, Any] = done["result"]
    return result


def test_a_softmax_version_evaluates_and_fine_tunes_as_keras_measures_it(
    seeds: SeedsModels, digits: httpx.Client, tmp_path: Path
) -> None:
    api = digits
    version = _version(api, "seeds", seeds.softmax_path)
    assert version["params"]["outputs"] == "probabilities"
    stated = _version(api, "seeds-stated", seeds.logits_path, outputs="probabilities")
    assert stated["params"]["outputs"] == "probabilities"
    refused = api.post(
        "/api/v1/models/seeds/versions",
        params={"filename": "m.keras", "params": json.dumps({"outputs": "softmax"})},
        content=seeds.softmax_path.read_bytes(),
    )
    assert refused.status_code == 422 and "params.outputs" in refused.json()["detail"]

    evaluated = _run(
        api,
        {
            "type": "evaluate",
            "source": {"model": "seeds", "version": "1"},
            "eval_dataset": "unit-test",
        },
    )
    assert abs(evaluated["metrics"]["eval"]["loss"] - seeds.keras_loss) < 1e-3

    tuned = _run(
        api,
        {
            "type": "finetune",
            "source": {"model": "seeds", "version": "1"},
            "dataset": "unit-train",
            "eval_dataset": "unit-test",
            "epochs": 3,
            "batch_size": 32,
        },
    )
    report = tuned["report"]
    assert report["parent"]["metrics"] == evaluated["metrics"]["eval"]
    # A double softmax cannot bring the loss below -log(e / (e + 9)) ≈ 1.46.
    assert report["facts"]["fine_tune"]["final_loss"] < seeds.keras_loss
    child_loss = report["child"]["metrics"]["loss"]
    assert child_loss < seeds.keras_loss
    child = api.get(f"/api/v1/models/seeds/versions/{tuned['version']}").json()
    assert child["format"] == "keras" and child["params"]["outputs"] == "probabilities"
    path = tmp_path / "tuned.keras"
    path.write_bytes(api.get(f"/api/v1/models/seeds/versions/{tuned['version']}/download").content)
    saved = keras_module().saving.load_model(str(path), compile=False)
    assert abs(child_loss - keras_loss(saved, seeds.x_test, seeds.y_test)) < 1e-3


def test_a_softmax_teacher_distils_as_well_as_its_logits_twin(
    seeds: SeedsModels, digits: httpx.Client
) -> None:
    api = digits
    assert _version(api, "softmax", seeds.softmax_path)["params"]["outputs"] == "probabilities"
    assert _version(api, "logits", seeds.logits_path)["params"]["outputs"] == "logits"
    losses = {}
    for teacher in ("softmax", "logits"):
        result = _run(
            api,
            {
                "type": "distill",
                "teacher": {"model": teacher, "version": "1"},
                "student": {"spec": {"arch": "mlp", "hidden": [32]}},
                "dataset": "unit-train",
                "eval_dataset": "unit-test",
                "epochs": 20,
                "optimizer": {"name": "adam", "lr": 0.005},
            },
        )
        teacher_row, student_row = result["report"]["parent"], result["report"]["child"]
        assert abs(teacher_row["metrics"]["loss"] - seeds.keras_loss) < 1e-3
        losses[teacher] = student_row["metrics"]["loss"]
        student = api.get(f"/api/v1/models/{teacher}/versions/{result['version']}").json()
        assert student["params"]["outputs"] == "logits"
    assert abs(losses["softmax"] - losses["logits"]) < 1e-3
