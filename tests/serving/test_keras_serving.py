"""A Keras ``.keras`` version served through a deployment on a real server answers what
Keras computes in process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelyard.client import Client
from modelyard.runtimes.keras_io import keras_module
from tests.serving.conftest import deploy
from tests.support.keras_seeds import seeds_model
from tests.support.server import LiveServer


@pytest.fixture
def keras_model(tmp_path: Path) -> Any:
    """The seeds' Keras model (Dense 128-128-10 on 784 inputs), saved as ``digits.keras``.

    Built before the server starts: the server's warm-up imports torch in a thread, and
    torch must not be imported from two threads at once.
    """
    keras = keras_module()
    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.save(str(tmp_path / "digits.keras"))
    return model


def test_a_keras_version_deploys_and_predicts_what_keras_predicts(
    keras_model: Any, server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    model = keras_model
    path = tmp_path / "digits.keras"
    with Client(server.url, server.admin_key) as client:
        client.models.create("keras-mlp")
        version = client.models.push("keras-mlp", path)
    assert version.format == "keras"

    deploy(api, "keras", model="keras-mlp")
    meta = api.get("/v2/models/keras").json()
    assert [(t["datatype"], t["shape"]) for t in meta["inputs"]] == [("FP32", [-1, 784])]
    assert [(t["datatype"], t["shape"]) for t in meta["outputs"]] == [("FP32", [-1, 10])]

    x = np.random.default_rng(0).random((16, 784), dtype=np.float32)
    reply = api.post("/api/v1/deployments/keras/predict", json={"inputs": x.tolist()})
    assert reply.status_code == 200, reply.text
    (served,) = reply.json()["outputs"].values()
    np.testing.assert_allclose(np.asarray(served), model.predict(x, verbose=0), atol=1e-5)

    bad = api.post("/api/v1/deployments/keras/predict", json={"inputs": [[0.0] * 783]})
    assert bad.status_code == 422, bad.text
    assert "783" in bad.text and "784" in bad.text


@pytest.fixture
def softmax_model(tmp_path: Path) -> Any:
    """The seeds' Keras model with its softmax output, saved as ``softmax.keras``."""
    keras = keras_module()
    keras.utils.set_random_seed(3)
    model = seeds_model(keras, "softmax")
    model.save(str(tmp_path / "softmax.keras"))
    return model


def test_a_softmax_deployment_returns_the_models_own_probabilities(
    softmax_model: Any, server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    api.post("/api/v1/models", json={"name": "keras-softmax"}).raise_for_status()
    reply = api.post(
        "/api/v1/models/keras-softmax/versions",
        params={"filename": "softmax.keras"},
        content=(tmp_path / "softmax.keras").read_bytes(),
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["params"]["outputs"] == "probabilities"
    deploy(api, "probs", model="keras-softmax", postprocess={"softmax": True, "top_k": 3})

    x = np.random.default_rng(1).random((8, 64), dtype=np.float32)
    reply = api.post("/api/v1/deployments/probs/predict", json={"inputs": x.tolist()})
    assert reply.status_code == 200, reply.text
    outputs = reply.json()["outputs"]
    expected = softmax_model.predict(x, verbose=0)
    np.testing.assert_allclose(np.asarray(outputs["probabilities"]), expected, atol=1e-6)
    best = np.sort(expected, axis=1)[:, ::-1][:, :3]
    np.testing.assert_allclose(np.asarray(outputs["top_k_scores"]), best, atol=1e-6)
