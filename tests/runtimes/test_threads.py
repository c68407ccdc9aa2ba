"""Concurrent calls on one runtime each get their own, correct answer."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from modelyard.runtimes import load_runtime
from tests.runtimes.models import Version

THREADS = 8
CALLS_PER_THREAD = 10


@pytest.mark.parametrize("version", ["mlp", "cnn"], indirect=True)
@pytest.mark.parametrize(
    ("fmt", "runtime"),
    [
        ("safetensors", "torch"),
        ("safetensors", "onnxruntime"),
        ("torchscript", "auto"),
        ("torch_export", "auto"),
        ("onnx", "auto"),
    ],
)
def test_eight_threads_calling_infer_at_once_get_correct_results(
    version: Version, fmt: str, runtime: str, tmp_path: Path
) -> None:
    rt = load_runtime(version.artifact(fmt), runtime=runtime, device="cpu", work_dir=tmp_path)
    [spec] = rt.inputs
    [out_spec] = rt.outputs
    expected = version.expected(version.x)
    start = threading.Barrier(THREADS)

    def worker(index: int) -> list[tuple[int, int, np.ndarray]]:
        start.wait()
        results = []
        for call in range(CALLS_PER_THREAD):
            # Every call asks about different rows, in a different batch size.
            begin = (index * CALLS_PER_THREAD + call) * 7
            rows = 1 + (index + call) % 5
            out = rt.infer({spec.name: version.x[begin : begin + rows]})
            results.append((begin, rows, out[out_spec.name]))
        return results

    with ThreadPoolExecutor(THREADS) as pool:
        answers = [r for rs in pool.map(worker, range(THREADS)) for r in rs]
    assert len(answers) == THREADS * CALLS_PER_THREAD
    for begin, rows, got in answers:
        np.testing.assert_allclose(got, expected[begin : begin + rows], atol=1e-5)
