"""``auto``: ONNX Runtime only when proven equal to torch and faster, with the evidence kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelyard.errors import InvalidInput
from modelyard.runtimes import load_runtime
from modelyard.runtimes import selection as selection_module
from modelyard.runtimes.onnx_export import ExportFailed
from modelyard.runtimes.ort import OnnxRuntime
from tests.runtimes.models import Version


@pytest.mark.parametrize("version", ["mlp", "cnn"], indirect=True)
def test_auto_measures_both_engines_and_keeps_the_faster(version: Version, tmp_path: Path) -> None:
    rt = load_runtime(version.artifact("safetensors"), device="cpu", work_dir=tmp_path)
    chosen = rt.selection
    assert chosen["runtime"] == rt.name
    assert chosen["max_abs_diff"] <= 1e-4
    assert chosen["exporter"] in ("torchscript", "dynamo")
    timings = chosen["timings_ms"]
    assert set(timings) == {"torch", "onnxruntime"}
    for engine in timings.values():
        assert set(engine) == {"batch_1", "batch_32"}
        assert all(ms > 0 for ms in engine.values())
    ratios = [timings["onnxruntime"][k] / timings["torch"][k] for k in ("batch_1", "batch_32")]
    assert chosen["onnxruntime_time_ratio"] == pytest.approx(np.sqrt(ratios[0] * ratios[1]))
    assert (rt.name == "onnxruntime") == (chosen["onnxruntime_time_ratio"] < 1)
    assert (tmp_path / "model.onnx").is_file()
    raw = version.x[:9]
    np.testing.assert_allclose(rt.infer({"input": raw})["output"], version.expected(raw), atol=1e-5)


def _failing_export(*args: object, **kwargs: object) -> str:
    raise ExportFailed("torchscript exporter: RuntimeError: unsupported operator")


def test_auto_keeps_torch_when_the_export_fails(
    mlp: Version, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selection_module, "export_onnx", _failing_export)
    rt = load_runtime(mlp.artifact("safetensors"), device="cpu", work_dir=tmp_path)
    assert rt.name == "torch"
    assert "unsupported operator" in rt.selection["reason"]
    raw = mlp.x[:2]
    np.testing.assert_allclose(rt.infer({"input": raw})["output"], mlp.expected(raw), atol=1e-5)


def test_asking_for_onnxruntime_when_the_export_fails_is_an_error(
    mlp: Version, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selection_module, "export_onnx", _failing_export)
    with pytest.raises(InvalidInput, match=r"runtime onnxruntime: .*unsupported operator"):
        load_runtime(mlp.artifact("safetensors"), runtime="onnxruntime", work_dir=tmp_path)


def test_auto_keeps_torch_when_the_export_computes_something_else(
    mlp: Version, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_forward = OnnxRuntime.forward

    def off_by_a_little(self: OnnxRuntime, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v + 1e-3 for k, v in real_forward(self, arrays).items()}

    monkeypatch.setattr(OnnxRuntime, "forward", off_by_a_little)
    rt = load_runtime(mlp.artifact("safetensors"), device="cpu", work_dir=tmp_path)
    assert rt.name == "torch"
    assert "output 'output' differs by up to 0.001" in rt.selection["reason"]


@pytest.mark.parametrize(
    ("fmt", "engine"),
    [("torchscript", "torchscript"), ("torch_export", "torch_export"), ("onnx", "onnxruntime")],
)
def test_other_formats_run_on_their_own_engine(
    mlp: Version, fmt: str, engine: str, tmp_path: Path
) -> None:
    rt = load_runtime(mlp.artifact(fmt), work_dir=tmp_path)
    assert rt.selection == {"runtime": engine, "reason": f"the only runtime for {fmt} versions"}


def test_a_requested_engine_says_so(mlp: Version, tmp_path: Path) -> None:
    rt = load_runtime(mlp.artifact("safetensors"), runtime="torch", work_dir=tmp_path)
    assert rt.selection == {"runtime": "torch", "reason": "requested"}
