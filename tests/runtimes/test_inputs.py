"""Bad inputs are refused with a message naming the tensor and the dimension at fault."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modelyard.errors import InvalidInput
from modelyard.nn import build_model, save_weights, spec_signature
from modelyard.runtimes import InputPipeline, Runtime, TensorSpec, VersionArtifact, load_runtime
from tests.runtimes.models import Version, registry_signature

RUNTIMES = ["torch", "onnxruntime"]


@pytest.fixture(params=RUNTIMES)
def digits_runtime(request: pytest.FixtureRequest, mlp: Version, tmp_path: Path) -> Runtime:
    return load_runtime(
        mlp.artifact("safetensors"), runtime=request.param, device="cpu", work_dir=tmp_path
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.zeros((2, 63)), r"^input 'input': dimension 1 is 63, the model needs 64$"),
        (np.zeros((2, 8, 9)), r"input 'input': has 3 dimensions \[2, 8, 9\], the model needs 2"),
        (np.zeros(64), r"input 'input': has 1 dimensions \[64\], the model needs 2"),
        (np.float32(1.0), r"input 'input': is a scalar"),
        (np.zeros((0, 64)), r"input 'input': dimension 0 \(the batch\) is empty"),
        (np.array([["a"] * 64]), r"input 'input': holds <U1 values, which cannot be read as FP32"),
        (np.zeros((2, 64), dtype=np.complex64), r"input 'input': holds complex64 values"),
    ],
)
def test_shape_and_type_errors_name_the_tensor_and_dimension(
    digits_runtime: Runtime, value: np.ndarray, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        digits_runtime.infer({"input": value})


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_with_their_row(digits_runtime: Runtime, bad: float) -> None:
    rows = np.ones((4, 64))
    rows[2, 5] = bad
    with pytest.raises(InvalidInput, match=r"input 'input': row 2 holds NaN or infinite values"):
        digits_runtime.infer({"input": rows})


def test_a_float64_too_large_for_float32_is_refused(digits_runtime: Runtime) -> None:
    rows = np.ones((2, 64))
    rows[1, 0] = 1e300
    with pytest.raises(
        InvalidInput, match=r"input 'input': a value in row 1 is too large for FP32"
    ):
        digits_runtime.infer({"input": rows})


def test_missing_and_unknown_inputs_are_named(digits_runtime: Runtime) -> None:
    with pytest.raises(InvalidInput, match=r"input 'input' is missing"):
        digits_runtime.infer({})
    with pytest.raises(InvalidInput, match=r"unknown input 'pixels'; the model takes 'input'"):
        digits_runtime.infer({"input": np.ones((1, 64)), "pixels": np.ones((1, 64))})


def test_ints_bools_and_float64_are_cast_to_the_models_float32(
    digits_runtime: Runtime, mlp: Version
) -> None:
    pixels = mlp.x[:3].astype(np.int64)
    want = mlp.expected(pixels)
    for same in (pixels, pixels.astype(np.uint8), pixels.astype(np.float64), pixels.tolist()):
        got = digits_runtime.infer({"input": same})["output"]
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert digits_runtime.infer({"input": np.ones((1, 64), dtype=bool)})["output"].shape == (1, 10)


def test_a_read_only_buffer_is_accepted(digits_runtime: Runtime, mlp: Version) -> None:
    # The binary-tensor extension hands over arrays that view the request body.
    raw = np.frombuffer(mlp.x[:2].astype(np.float32).tobytes(), dtype=np.float32).reshape(2, 64)
    got = digits_runtime.infer({"input": raw})["output"]
    np.testing.assert_allclose(got, mlp.expected(raw), atol=1e-5)


def test_token_ids_must_be_whole_numbers_within_the_vocabulary(tmp_path: Path) -> None:
    spec = {"arch": "rnn", "input_shape": [5], "vocab_size": 20, "hidden_size": 8,
            "num_outputs": 3}  # fmt: skip
    torch.manual_seed(0)
    model = build_model(spec).eval()
    path = tmp_path / "rnn.safetensors"
    save_weights(model, path, spec)
    preprocessing = {"input_shape": [5], "token_ids": True, "vocab_size": 20}
    artifact = VersionArtifact(
        "safetensors", path, spec, spec_signature(spec), {"preprocessing": preprocessing}
    )
    rt = load_runtime(artifact, runtime="torch", work_dir=tmp_path)
    assert rt.inputs == [TensorSpec("input", "INT64", [-1, 5])]
    ids = np.array([[1, 2, 3, 4, 19]])
    with torch.no_grad():
        want = model(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(rt.infer({"input": ids.astype(np.float64)})["output"], want)
    with pytest.raises(InvalidInput, match=r"input 'input': 2.5 is not a whole number"):
        rt.infer({"input": np.array([[1, 2, 2.5, 4, 5]])})
    with pytest.raises(InvalidInput, match=r"token id 20 is outside \[0, 20\)"):
        rt.infer({"input": np.array([[1, 2, 3, 4, 20]])})


class _AddPair(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b.to(a.dtype)


@pytest.fixture
def pair_runtime(tmp_path: Path) -> Runtime:
    """An ONNX model with two inputs: float ``a`` [N, 3] and int32 ``b`` [N, 3]."""
    path = tmp_path / "pair.onnx"
    example = (torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.int32))
    torch.onnx.export(
        _AddPair(), example, str(path), input_names=["a", "b"], output_names=["sum"],
        dynamic_axes={"a": {0: "n"}, "b": {0: "n"}}, dynamo=False,
    )  # fmt: skip
    signature = registry_signature(path, "onnx", None)
    return load_runtime(VersionArtifact("onnx", path, None, signature), work_dir=tmp_path)


def test_every_input_must_share_the_batch(pair_runtime: Runtime) -> None:
    a, b = np.ones((3, 3), dtype=np.float32), np.ones((2, 3), dtype=np.int32)
    message = r"input 'b': dimension 0 \(the batch\) is 2, but input 'a' has 3"
    with pytest.raises(InvalidInput, match=message):
        pair_runtime.infer({"a": a, "b": b})


def test_int_inputs_take_whole_floats_and_refuse_out_of_range_values(
    pair_runtime: Runtime,
) -> None:
    a = np.zeros((1, 3), dtype=np.float32)
    out = pair_runtime.infer({"a": a, "b": np.array([[1.0, 2.0, 3.0]])})
    np.testing.assert_array_equal(out["sum"], [[1.0, 2.0, 3.0]])
    too_big = r"input 'b': value 4294967296 is outside the range of INT32"
    with pytest.raises(InvalidInput, match=too_big):
        pair_runtime.infer({"a": a, "b": np.array([[0, 0, 2**32]], dtype=np.int64)})
    with pytest.raises(InvalidInput, match=r"input 'b': 0.5 is not a whole number; .* INT32"):
        pair_runtime.infer({"a": a, "b": np.array([[0.5, 0, 0]])})


def test_a_preprocessing_that_makes_other_rows_than_the_model_takes_is_refused() -> None:
    from modelyard.training import Preprocessor

    pre = Preprocessor(input_shape=[32])
    message = r"makes rows of shape \[32\], but the model's input 'x' needs \[64\]"
    with pytest.raises(InvalidInput, match=message):
        InputPipeline([TensorSpec("x", "FP32", [-1, 64])], pre)
