"""Compression through the API: quantize, prune, cast, export, distill, gates, Keras.

Everything runs through a live server and its worker processes on scikit-learn's digits,
split into a training and a held-out set; the acceptance thresholds of the compression
issue are asserted on what the jobs measured and registered.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.jobs.conftest import wait_for

MLP = {"arch": "mlp", "input_shape": [64], "hidden": [128, 128], "num_outputs": 10}
CNN = {
    "arch": "cnn",
    "input_shape": [1, 8, 8],
    "conv": [{"channels": 16}, {"channels": 32}],
    "hidden": [64],
    "num_outputs": 10,
}


def _split_digits(
    tmp_path: Path, upsample: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype(np.float32)
    if upsample:
        # 8x8 images scaled up 3x and padded to 28x28: 784 features in [0, 1].
        images = np.kron(x.reshape(-1, 8, 8), np.ones((3, 3), dtype=np.float32)) / 16.0
        x = np.pad(images, ((0, 0), (2, 2), (2, 2))).reshape(len(x), 784)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    return x_train, x_test, y_train, y_test


def _push(api: httpx.Client, name: str, x: np.ndarray, y: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.npz"
    np.savez(path, x=x, y=y)
    reply = api.post(
        "/api/v1/datasets",
        params={"name": name, "label": "y", "filename": f"{name}.npz"},
        content=path.read_bytes(),
    )
    assert reply.status_code == 201, reply.text


@pytest.fixture
def digits(api: httpx.Client, tmp_path: Path) -> httpx.Client:
    """The live API with ``digits-train`` and ``digits-test`` data sets."""
    x_train, x_test, y_train, y_test = _split_digits(tmp_path)
    _push(api, "digits-train", x_train, y_train, tmp_path)
    _push(api, "digits-test", x_test, y_test, tmp_path)
    return api


def run_job(api: httpx.Client, body: dict[str, Any], status: str = "succeeded") -> dict[str, Any]:
    reply = api.post("/api/v1/jobs", json=body)
    assert reply.status_code == 201, reply.text
    done = wait_for(api, reply.json()["id"], timeout=600)
    assert done["status"] == status, done["error"]
    return done


def train(api: httpx.Client, name: str, spec: dict[str, Any], epochs: int = 15) -> None:
    run_job(
        api,
        {
            "type": "train",
            "model": {"spec": spec},
            "dataset": "digits-train",
            "output_model": name,
            "optimizer": {"name": "adam", "lr": 0.003},
            "epochs": epochs,
            "batch_size": 64,
            "seed": 0,
            "preprocessing": {"scale": 0.0625},
        },
    )


def compress(
    api: httpx.Client, model: str, method: dict[str, Any], status: str = "succeeded", **extra: Any
) -> dict[str, Any]:
    body = {
        "type": "compress",
        "source": {"model": model, "version": "1"},
        "method": method,
        "eval_dataset": "digits-test",
        **extra,
    }
    return run_job(api, body, status)


def versions(api: httpx.Client, model: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.get(f"/api/v1/models/{model}/versions").json()["items"]
    return items


def test_dynamic_int8_is_smaller_and_as_accurate_and_a_failing_gate_registers_nothing(
    digits: httpx.Client, tmp_path: Path
) -> None:
    api = digits
    train(api, "mlp", MLP)
    method = {"name": "quantize", "scheme": "dynamic_int8", "backend": "torchao"}
    done = compress(api, "mlp", method, gate={"max_metric_drop": 0.01})
    report = done["result"]["report"]
    assert report["metric"] == "accuracy" and report["parent"]["metrics"]["accuracy"] > 0.9
    assert report["ratio"]["weight_bytes"] >= 3.5
    assert report["ratio"]["size_bytes"] >= 3.5
    assert report["metric_drop"] <= 0.01
    assert set(report["child"]["latency_ms"]) == {"batch_1", "batch_32"}
    assert report["child"]["params"] == report["parent"]["params"] == 26122
    assert done["metrics"]["report"] == report
    # The job's events say so exactly when the report finds the child slower.
    speed = report["speed"]
    assert speed["child_latency_ms"] == report["child"]["latency_ms"]
    slower = [
        b for b, ms in speed["parent_latency_ms"].items() if report["child"]["latency_ms"][b] > ms
    ]
    assert speed["slower_at"] == slower and speed["slower_than_parent"] == bool(slower)
    events = api.get(f"/api/v1/jobs/{done['id']}/events").json()["items"]
    flagged = [e["data"] for e in events if e["type"] == "slower_than_parent"]
    assert flagged == ([speed] if slower else [])

    child = api.get("/api/v1/models/mlp/versions/2").json()
    assert child["format"] == "safetensors" and child["lineage"]["parent_version"] == 1
    assert child["params"]["compression"]["scheme"] == "dynamic_int8"
    assert child["params"]["lineage"]["method"] == "quantize"
    assert child["params"]["lineage"]["parent"]["version"] == 1
    assert child["metrics"]["eval_accuracy"] == report["child"]["metrics"]["accuracy"]

    # The stored weights are int8, and restore_model rebuilds a model that predicts as the
    # job measured.
    from safetensors.torch import load_file

    from modelyard.compression import restore_model

    path = tmp_path / "child.safetensors"
    path.write_bytes(api.get("/api/v1/models/mlp/versions/2/download").content)
    state = load_file(str(path))
    assert str(state["layers.0.linear.weight"].dtype) == "torch.int8"
    model = restore_model(child["spec"], child["params"]["compression"], state)
    _x_train, x_test, _y_train, y_test = _split_digits(tmp_path)
    import torch

    with torch.no_grad():
        predicted = model(torch.from_numpy(x_test * 0.0625)).argmax(1).numpy()
    assert float((predicted == y_test).mean()) == pytest.approx(
        report["child"]["metrics"]["accuracy"]
    )

    comparison = api.get("/api/v1/models/mlp/versions/1/compare/2").json()
    first, second = comparison["versions"]
    assert (first["version"], second["version"]) == (1, 2) and comparison["comparable"]
    assert first["params"] == second["params"] == 26122
    assert first["metrics"] == report["parent"]["metrics"]
    assert comparison["ratio"]["weight_bytes"] == pytest.approx(report["ratio"]["weight_bytes"])
    assert set(first["latency_ms"]) == {"batch_1", "batch_32"}

    # 95 % of the weights zeroed without fine-tuning: far below the gate.
    failed = compress(
        api,
        "mlp",
        {"name": "prune", "kind": "unstructured", "sparsity": 0.95},
        status="failed",
        gate={"max_metric_drop": 0.01},
    )
    assert "gate: accuracy fell by" in failed["error"] and "not registered" in failed["error"]
    assert failed["metrics"]["report"]["metric_drop"] > 0.01
    assert failed["metrics"]["report"]["child"]["nonzero_params"] < 0.1 * 26122
    assert [v["version"] for v in versions(api, "mlp")] == [1, 2]

    cast = compress(api, "mlp", {"name": "cast", "dtype": "float16"})["result"]
    assert cast["report"]["ratio"]["weight_bytes"] == pytest.approx(2.0, rel=0.01)
    assert cast["report"]["metric_drop"] <= 0.01
    cast_version = api.get(f"/api/v1/models/mlp/versions/{cast['version']}").json()
    assert cast_version["params"]["compression"] == {"method": "cast", "dtype": "float16"}


@pytest.mark.slow
def test_pruning_unstructured_with_fine_tuning_and_structured(digits: httpx.Client) -> None:
    api = digits
    train(api, "mlp", MLP)
    train(api, "cnn", CNN)
    fine_tune = {"dataset": "digits-train", "epochs": 3, "optimizer": {"name": "adam", "lr": 1e-3}}
    sparse = compress(
        api,
        "mlp",
        {"name": "prune", "kind": "unstructured", "sparsity": 0.8, "fine_tune": fine_tune},
        gate={"max_metric_drop": 0.01},
    )["result"]
    report = sparse["report"]
    assert report["metric_drop"] <= 0.01
    assert report["child"]["nonzero_params"] <= 0.21 * report["child"]["params"]
    version = api.get(f"/api/v1/models/mlp/versions/{sparse['version']}").json()
    assert version["params"]["compression"]["sparsity"] >= 0.8
    assert version["params"]["compression"]["method"] == "prune"

    for model, parent_params in (("mlp", 26122), ("cnn", 13706)):
        done = compress(
            api,
            model,
            {"name": "prune", "kind": "structured", "amount": 0.5, "fine_tune": fine_tune},
        )["result"]
        report = done["report"]
        assert report["parent"]["params"] == parent_params
        assert parent_params / report["child"]["params"] >= 1.8
        assert report["child"]["latency_ms"]["batch_32"] > 0
        assert "latency_batch_32" in report["ratio"]
        assert report["metric_drop"] <= 0.03
        smaller = api.get(f"/api/v1/models/{model}/versions/{done['version']}").json()
        assert "compression" not in smaller["params"]
        if model == "mlp":
            assert smaller["spec"]["hidden"] == [64, 64]
        else:
            assert [c["channels"] for c in smaller["spec"]["conv"]] == [8, 16]
            assert smaller["spec"]["hidden"] == [32]


def test_distilled_student_keeps_the_teachers_accuracy(digits: httpx.Client) -> None:
    api = digits
    train(api, "mlp", MLP)
    done = run_job(
        api,
        {
            "type": "distill",
            "teacher": {"model": "mlp", "version": "1"},
            "student": {"spec": {"arch": "mlp", "hidden": [32]}},
            "dataset": "digits-train",
            "eval_dataset": "digits-test",
            "temperature": 4.0,
            "alpha": 0.7,
            "epochs": 30,
            "optimizer": {"name": "adam", "lr": 0.005},
        },
    )
    report = done["result"]["report"]
    teacher, student = report["parent"], report["child"]
    assert student["params"] * 4 <= teacher["params"]
    assert student["metrics"]["accuracy"] >= 0.97 * teacher["metrics"]["accuracy"]
    version = api.get(f"/api/v1/models/mlp/versions/{done['result']['version']}").json()
    assert version["spec"]["hidden"] == [32] and version["spec"]["input_shape"] == [64]
    assert version["params"]["distillation"]["teacher"]["version"] == 1
    assert version["params"]["preprocessing"]["scale"] == 0.0625


@pytest.mark.slow
def test_onnx_export_matches_the_source_and_onnx_runtime_quantizes_it(
    digits: httpx.Client, tmp_path: Path
) -> None:
    import onnxruntime as ort
    import torch

    from modelyard.nn import load_weights

    api = digits
    train(api, "cnn", CNN)
    done = compress(api, "cnn", {"name": "export", "format": "onnx"})["result"]
    assert done["report"]["facts"]["max_abs_diff"] <= 1e-4
    version = api.get(f"/api/v1/models/cnn/versions/{done['version']}").json()
    assert version["format"] == "onnx" and version["lineage"]["parent_version"] == 1
    assert version["signature"]["inputs"][0]["shape"] == [-1, 1, 8, 8]

    onnx_path = tmp_path / "cnn.onnx"
    onnx_path.write_bytes(
        api.get(f"/api/v1/models/cnn/versions/{done['version']}/download").content
    )
    weights = tmp_path / "cnn.safetensors"
    weights.write_bytes(api.get("/api/v1/models/cnn/versions/1/download").content)
    _x_train, x_test, _y_train, _y_test = _split_digits(tmp_path)
    inputs = (x_test * 0.0625).reshape(-1, 1, 8, 8).astype(np.float32)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": inputs})
    with torch.no_grad():
        want = load_weights(None, weights)(torch.from_numpy(inputs)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)

    static = compress(
        api,
        "cnn",
        {"name": "quantize", "scheme": "static_int8", "calibration_dataset": "digits-train"},
        gate={"max_metric_drop": 0.02},
    )["result"]
    assert static["report"]["facts"]["backend"] == "onnxruntime"
    assert static["report"]["ratio"]["weight_bytes"] >= 3.0
    quantized = api.get(f"/api/v1/models/cnn/versions/{static['version']}").json()
    assert quantized["format"] == "onnx"


@pytest.mark.slow
def test_torchscript_and_torch_export_versions_are_registered(digits: httpx.Client) -> None:
    api = digits
    train(api, "mlp", MLP, epochs=3)
    for fmt in ("torchscript", "torch_export"):
        done = compress(api, "mlp", {"name": "export", "format": fmt})["result"]
        assert done["report"]["facts"]["max_abs_diff"] <= 1e-4
        assert done["report"]["metric_drop"] == 0
        version = api.get(f"/api/v1/models/mlp/versions/{done['version']}").json()
        assert version["format"] == fmt


def test_specs_that_do_not_fit_are_refused_before_queuing(
    digits: httpx.Client, tmp_path: Path
) -> None:
    api = digits
    train(api, "mlp", MLP, epochs=1)
    x_train, _x_test, y_train, _y_test = _split_digits(tmp_path)
    _push(api, "narrow", x_train[:, :10], y_train, tmp_path)

    def refused(method: Any, **extra: Any) -> str:
        body = {
            "type": "compress",
            "source": {"model": "mlp", "version": "1"},
            "method": method,
            "eval_dataset": "digits-test",
            **extra,
        }
        reply = api.post("/api/v1/jobs", json=body)
        assert reply.status_code == 422, reply.text
        detail: str = reply.json()["detail"]
        return detail

    detail = refused(
        {"name": "prune", "kind": "unstructured", "sparsity": 0.5, "modules": ["layers.7.linear"]}
    )
    assert "method.modules[0]" in detail and "layers.7.linear" in detail
    assert "layers.0.linear" in detail
    detail = refused({"name": "prune", "kind": "structured", "amount": 0.5, "modules": ["head"]})
    assert "method.modules[0]" in detail
    detail = refused({"name": "quantize", "scheme": "static_int8", "calibration_dataset": "narrow"})
    assert "method.calibration_dataset" in detail and "[10]" in detail and "[64]" in detail
    assert "eval_dataset" in refused({"name": "cast", "dtype": "float16"}, eval_dataset="narrow")
    assert "method.sparsity" in refused({"name": "prune", "kind": "unstructured"})
    assert "method.name" in refused({"name": "shrink"})
    assert "gate.max_metric_drop" in refused(
        {"name": "cast", "dtype": "float16"}, gate={"max_metric_drop": -1}
    )
    assert "source" in refused({"name": "cast", "dtype": "float16"}, source={"model": "nope"})
    assert api.get("/api/v1/jobs").json()["total"] == 1


def _keras_model(path: Path, *, with_lambda: bool = False) -> Path:
    """The seeds' Keras model: Sequential Dense 128-128-10 on 784 inputs, saved to ``path``."""
    from modelyard.registry.keras import keras_module

    keras = keras_module()
    keras.utils.set_random_seed(0)
    layers = [
        keras.Input((784,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10),
    ]
    if with_lambda:
        layers.insert(1, keras.layers.Lambda(lambda x: x * 2))
    keras.Sequential(layers).save(str(path))
    return path


@pytest.mark.slow
def test_a_keras_model_is_uploaded_evaluated_fine_tuned_and_quantized(
    api: httpx.Client, tmp_path: Path
) -> None:
    x_train, x_test, y_train, y_test = _split_digits(tmp_path, upsample=True)
    _push(api, "digits784-train", x_train, y_train, tmp_path)
    _push(api, "digits784-test", x_test, y_test, tmp_path)
    api.post("/api/v1/models", json={"name": "seeds"}).raise_for_status()

    unsafe = _keras_model(tmp_path / "unsafe.keras", with_lambda=True)
    reply = api.post(
        "/api/v1/models/seeds/versions",
        params={"filename": "unsafe.keras"},
        content=unsafe.read_bytes(),
    )
    assert reply.status_code == 422 and "Lambda" in reply.json()["detail"]

    path = _keras_model(tmp_path / "seeds.keras")
    reply = api.post(
        "/api/v1/models/seeds/versions",
        params={"filename": "seeds.keras"},
        content=path.read_bytes(),
    )
    assert reply.status_code == 201, reply.text
    version = reply.json()
    assert version["format"] == "keras"
    assert version["signature"]["inputs"][0]["shape"] == [-1, 784]
    assert version["signature"]["outputs"][0]["shape"] == [-1, 10]

    evaluated = run_job(
        api,
        {
            "type": "evaluate",
            "source": {"model": "seeds", "version": "1"},
            "eval_dataset": "digits784-test",
        },
    )["result"]["report"]
    assert evaluated["params"] == 784 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10
    assert evaluated["metrics"]["accuracy"] < 0.5

    tuned = run_job(
        api,
        {
            "type": "finetune",
            "source": {"model": "seeds", "version": "1"},
            "dataset": "digits784-train",
            "eval_dataset": "digits784-test",
            "epochs": 5,
            "optimizer": {"name": "adam", "lr": 1e-3},
        },
    )["result"]
    assert tuned["version"] == 2
    assert tuned["report"]["child"]["metrics"]["accuracy"] > 0.9
    assert tuned["report"]["parent"]["metrics"] == evaluated["metrics"]
    tuned_version = api.get("/api/v1/models/seeds/versions/2").json()
    assert tuned_version["format"] == "keras" and tuned_version["lineage"]["parent_version"] == 1
    with zipfile.ZipFile(
        _download(api, "/api/v1/models/seeds/versions/2/download", tmp_path / "v2.keras")
    ) as zf:
        assert json.loads(zf.read("config.json"))["class_name"] == "Sequential"

    quantized = run_job(
        api,
        {
            "type": "compress",
            "source": {"model": "seeds", "version": "2"},
            "method": {"name": "quantize", "scheme": "dynamic_int8"},
            "eval_dataset": "digits784-test",
            "gate": {"max_metric_drop": 0.01},
        },
    )["result"]
    assert quantized["version"] == 3
    assert quantized["report"]["facts"]["backend"] == "onnxruntime"
    assert quantized["report"]["ratio"]["weight_bytes"] >= 3.5
    assert quantized["report"]["metric_drop"] <= 0.01
    third = api.get("/api/v1/models/seeds/versions/3").json()
    assert third["format"] == "onnx" and third["lineage"]["parent_version"] == 2

    reply = api.post(
        "/api/v1/jobs",
        json={
            "type": "compress",
            "source": {"model": "seeds", "version": "2"},
            "method": {"name": "prune", "kind": "structured", "amount": 0.5},
            "eval_dataset": "digits784-test",
        },
    )
    assert reply.status_code == 422 and "catalog versions" in reply.json()["detail"]


def _download(api: httpx.Client, url: str, path: Path) -> Path:
    path.write_bytes(api.get(url).content)
    return path
