"""Keras ``.keras`` versions as runtimes: vetted, loaded on the torch backend, and equal to
Keras's own ``predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelyard.errors import Unavailable, UnsafeArtifact
from modelyard.runtimes import LOADERS, TensorSpec, VersionArtifact, load_runtime
from modelyard.runtimes.keras_io import keras_module


def _sequential(path: Path, *extra: Any) -> Any:
    keras = keras_module()
    keras.utils.set_random_seed(0)
    layers = [
        keras.Input((784,)),
        *extra,
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10),
    ]
    model = keras.Sequential(layers)
    model.save(str(path))
    return model


def _rows(n: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, width), dtype=np.float32)


def test_keras_is_a_servable_format_with_its_own_engine() -> None:
    assert LOADERS["keras"].runtimes == ("keras",)


def test_a_sequential_model_serves_what_keras_predicts(tmp_path: Path) -> None:
    model = _sequential(tmp_path / "m.keras")
    runtime = load_runtime(
        VersionArtifact("keras", tmp_path / "m.keras"), device="cpu", work_dir=tmp_path / "w"
    )
    assert runtime.name == "keras"
    assert runtime.selection["runtime"] == "keras"
    (spec,) = runtime.inputs
    assert spec == TensorSpec(spec.name, "FP32", [-1, 784])
    assert [(s.datatype, s.shape) for s in runtime.outputs] == [("FP32", [-1, 10])]
    x = _rows(37, 784)
    out = runtime.infer({runtime.inputs[0].name: x})
    np.testing.assert_allclose(
        out[runtime.outputs[0].name], model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )


def test_a_file_without_the_keras_suffix_loads(tmp_path: Path) -> None:
    model = _sequential(tmp_path / "m.keras")
    blob = tmp_path / "0123abcd"
    blob.write_bytes((tmp_path / "m.keras").read_bytes())
    work = tmp_path / "work"
    runtime = load_runtime(VersionArtifact("keras", blob), device="cpu", work_dir=work)
    x = _rows(4, 784, seed=1)
    (out,) = runtime.infer({runtime.inputs[0].name: x}).values()
    np.testing.assert_allclose(out, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_a_functional_model_with_two_inputs_and_two_outputs(tmp_path: Path) -> None:
    keras = keras_module()
    keras.utils.set_random_seed(1)
    left = keras.Input((8,), name="left")
    right = keras.Input((4,), name="right")
    joined = keras.layers.Concatenate()([left, right])
    hidden = keras.layers.Dense(16, activation="tanh")(joined)
    scores = keras.layers.Dense(3, name="scores")(hidden)
    value = keras.layers.Dense(1, name="value")(hidden)
    model = keras.Model([left, right], [scores, value])
    model.save(str(tmp_path / "two.keras"))

    runtime = load_runtime(
        VersionArtifact("keras", tmp_path / "two.keras"), device="cpu", work_dir=tmp_path
    )
    assert [(s.name, s.shape) for s in runtime.inputs] == [("left", [-1, 8]), ("right", [-1, 4])]
    assert [s.shape for s in runtime.outputs] == [[-1, 3], [-1, 1]]
    x = {"left": _rows(5, 8), "right": _rows(5, 4, seed=2)}
    out = runtime.infer(x)
    expected = model.predict([x["left"], x["right"]], verbose=0)
    for spec, want in zip(runtime.outputs, expected, strict=True):
        np.testing.assert_allclose(out[spec.name], want, rtol=1e-5, atol=1e-6)


def test_recorded_preprocessing_runs_before_the_model(tmp_path: Path) -> None:
    model = _sequential(tmp_path / "m.keras")
    params = {"preprocessing": {"input_shape": [784], "scale": 0.5}}
    runtime = load_runtime(
        VersionArtifact("keras", tmp_path / "m.keras", params=params),
        device="cpu",
        work_dir=tmp_path,
    )
    x = _rows(6, 784)
    (out,) = runtime.infer({runtime.inputs[0].name: x}).values()
    np.testing.assert_allclose(out, model.predict(x * 0.5, verbose=0), rtol=1e-5, atol=1e-6)


def test_a_model_with_a_lambda_layer_is_refused_before_keras_reads_it(tmp_path: Path) -> None:
    keras = keras_module()
    _sequential(tmp_path / "lambda.keras", keras.layers.Lambda(lambda t: t * 2))
    with pytest.raises(UnsafeArtifact, match="Lambda runs arbitrary code"):
        load_runtime(
            VersionArtifact("keras", tmp_path / "lambda.keras"), device="cpu", work_dir=tmp_path
        )


def test_a_closed_runtime_refuses_calls(tmp_path: Path) -> None:
    _sequential(tmp_path / "m.keras")
    runtime = load_runtime(
        VersionArtifact("keras", tmp_path / "m.keras"), device="cpu", work_dir=tmp_path
    )
    runtime.close()
    with pytest.raises(Unavailable):
        runtime.infer({runtime.inputs[0].name: _rows(1, 784)})
