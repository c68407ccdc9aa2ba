"""Every compression method on the digits MLP and CNN: size, latency and accuracy, one run.

Trains the catalog MLP (64-128-128-10) and CNN (conv16-conv32-64) on three quarters of
scikit-learn's digits, applies each method with the same code the compression jobs run,
and evaluates parent and child on the held-out quarter. Latency is the median forward time
at batch 1 and 32 on this machine, on torch and on ONNX Runtime (the child exported to
ONNX where it can be: torchao's quantized tensors cannot), with the same thread count.

A second table puts each parent beside its int8 children: compute time at batch 1 and 32
and its ratio to the parent's on torch and to the parent's fastest engine (torch or ONNX
Runtime, what ``runtime: auto`` serves). Rows: the default ``quantize`` (ONNX Runtime's
dynamic int8), torchao's ``dynamic_int8``, and, for reference, PyTorch's own
``torch.ao.quantization.quantize_dynamic`` (x86 kernels, ``Linear`` layers only).
``python -m bench.compression --int8`` prints only that table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

THREADS = 1
MLP = {"arch": "mlp", "input_shape": [64], "hidden": [128, 128], "num_outputs": 10}
CNN = {
    "arch": "cnn",
    "input_shape": [1, 8, 8],
    "conv": [{"channels": 16}, {"channels": 32}],
    "hidden": [64],
    "num_outputs": 10,
}
FIT = {"dataset": "digits-train", "epochs": 3, "optimizer": {"name": "adam", "lr": 1e-3}}
METHODS: list[dict[str, Any]] = [
    {"name": "quantize"},
    {"name": "quantize", "scheme": "dynamic_int8", "backend": "torchao"},
    {"name": "quantize", "scheme": "weight_int8"},
    {"name": "quantize", "scheme": "weight_int4"},
    {"name": "quantize", "scheme": "static_int8", "calibration_dataset": "digits-train"},
    {"name": "prune", "kind": "unstructured", "sparsity": 0.8, "fine_tune": FIT},
    {"name": "prune", "kind": "structured", "amount": 0.5, "fine_tune": FIT},
    {"name": "cast", "dtype": "float16"},
    {"name": "cast", "dtype": "bfloat16"},
    {"name": "export", "format": "onnx"},
    {"name": "export", "format": "torchscript"},
    {"name": "export", "format": "torch_export"},
    {"name": "distill"},
]
STUDENT = {"arch": "mlp", "hidden": [32], "num_outputs": 10}


def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    return x_train, x_test, y_train, y_test


def _label(method: dict[str, Any]) -> str:
    from modelyard.compression import QuantizeMethod, parse_method, quantize_backend

    parsed = parse_method(method)
    if isinstance(parsed, QuantizeMethod):
        backend = quantize_backend(parsed, "catalog")
        default = " default" if method == {"name": "quantize"} else ""
        engine = " (ort)" if backend == "onnxruntime" else ""
        if method.get("backend") == "torchao":
            engine = " (torchao)"
        return f"quantize{default} {parsed.scheme}{engine}"
    detail = method.get("kind") or method.get("dtype") or method.get("format") or ""
    return f"{method['name']} {detail}".strip()


def _ort_latency(module: Any, example: Any, work: Path) -> dict[str, float] | None:
    """ONNX Runtime latency of ``module`` exported to ONNX, or None if it cannot be exported
    or ONNX Runtime cannot run the export (bfloat16 ``Gemm`` has no CPU kernel)."""
    from modelyard.compression.export import export_onnx
    from modelyard.compression.onnx_module import OnnxModule
    from modelyard.compression.report import latency_ms

    if isinstance(module, OnnxModule):
        return None
    path = work / "latency.onnx"
    try:
        export_onnx(module, example[:8], path, 18)
        ort_module = OnnxModule(path, threads=THREADS)
    except Exception:
        return None
    return {f"batch_{b}": latency_ms(ort_module, example[: min(b, 64)], b) for b in (1, 32)}


def _row(
    name: str,
    label: str,
    fmt: str,
    measured: dict[str, Any],
    parent_accuracy: float,
    torch_latency: dict[str, float] | None,
    ort_latency: dict[str, float] | None,
) -> str:
    def ms(values: dict[str, float] | None, batch: str) -> str:
        return f"{values[batch]:.3f}" if values else "—"

    accuracy = measured["metrics"]["accuracy"]
    return (
        f"{name:<6}{label:<38}{fmt:<13}{measured['size_bytes'] / 1024:>9.1f}"
        f"{measured['weight_bytes'] / 1024:>10.1f}{measured['params']:>8}"
        f"{measured['nonzero_params']:>9}{accuracy:>8.4f}{accuracy - parent_accuracy:>+8.4f}"
        f"{ms(torch_latency, 'batch_1'):>9}{ms(torch_latency, 'batch_32'):>9}"
        f"{ms(ort_latency, 'batch_1'):>9}{ms(ort_latency, 'batch_32'):>9}"
    )


def _prepared(name: str, spec: dict[str, Any], root: Path, digits: Any) -> tuple[Any, Any]:
    """The trained catalog model of ``spec`` as a compression source, and its data."""
    from modelyard.compression import Data, Source, load_module, objective_for
    from modelyard.nn import save_weights
    from modelyard.training import Preprocessor, train

    x_train, x_test, y_train, y_test = digits
    result = train(
        spec,
        {
            "epochs": 15,
            "batch_size": 64,
            "optimizer": {"name": "adam", "lr": 0.003},
            "preprocessing": {"scale": 0.0625},
        },
        x_train,
        y_train,
    )
    path = root / f"{name}.safetensors"
    save_weights(result.model, path, spec=spec)
    pre = Preprocessor.from_dict(result.preprocessing)
    y_eval = pre.encode_labels(y_test)
    data = Data(
        pre.apply(x_test),
        y_eval,
        objective_for(y_eval, 10),
        pre.apply(x_train),
        pre.encode_labels(y_train),
    )
    params = {"preprocessing": result.preprocessing}
    source = Source(
        "safetensors",
        path,
        spec,
        params,
        None,
        load=lambda p=path, s=spec, q=params: load_module("safetensors", p, s, q),
    )
    return source, data


def _methods_table(root: Path, digits: Any) -> None:
    from modelyard.compression import DistillOptions, compress, measure, parse_method, parse_model
    from modelyard.compression.distill import distill
    from modelyard.compression.onnx_module import OnnxModule

    header = (
        f"{'model':<6}{'method':<38}{'format':<13}{'size KB':>9}{'weight KB':>10}{'params':>8}"
        f"{'nonzero':>9}{'acc':>8}{'Δacc':>8}{'torch b1':>9}{'b32':>9}{'ort b1':>9}{'b32':>9}"
    )
    print(header)
    for name, spec in (("mlp", MLP), ("cnn", CNN)):
        source, data = _prepared(name, spec, root, digits)
        path = source.path
        parent = source.load()
        parent_row = measure(parent, path, data.x_eval, data.y_eval, data.objective)
        accuracy = parent_row["metrics"]["accuracy"]
        ort = _ort_latency(parent, data.x_eval, root)
        print(
            _row(
                name,
                "(parent)",
                "safetensors",
                parent_row,
                accuracy,
                parent_row["latency_ms"],
                ort,
            )
        )
        for index, raw in enumerate(METHODS):
            work = root / f"{name}-{index}"
            work.mkdir()
            started = time.perf_counter()
            if raw["name"] == "distill":
                options = parse_model(
                    DistillOptions,
                    {"fit": {**FIT, "epochs": 30, "optimizer": {"name": "adam", "lr": 5e-3}}},
                    "",
                )
                student = {**STUDENT, "input_shape": spec["input_shape"]}
                if name == "cnn":
                    student = {**CNN, "conv": [{"channels": 8}], "hidden": []}
                child = distill(parent, student, data, options, work)
                label = f"distill -> {child.module.__class__.__name__.lower()}"
            else:
                child = compress(parse_method(raw), source, data, work)
                label = _label(raw)
            row = measure(child.module, child.artifact, data.x_eval, data.y_eval, data.objective)
            is_ort = isinstance(child.module, OnnxModule)
            torch_latency = None if is_ort else row["latency_ms"]
            ort_latency = (
                row["latency_ms"] if is_ort else _ort_latency(child.module, data.x_eval, work)
            )
            line = _row(name, label, child.format, row, accuracy, torch_latency, ort_latency)
            print(f"{line}   ({time.perf_counter() - started:.1f} s)", flush=True)
    print(
        "size = artifact bytes; weight = bytes the weights take in memory (torchao's int4 "
        "keeps one value per byte in memory, two per byte on disk); Δacc vs the parent; "
        "ort = the model exported to ONNX and run on ONNX Runtime"
    )


def _int8_table(root: Path, digits: Any) -> None:
    """Each parent beside its int8 children: compute time and its ratio to the parent's."""
    import torch

    from modelyard.compression import compress, parse_method
    from modelyard.compression.report import latency_ms

    batches = ("batch_1", "batch_32")
    print(
        f"{'model':<6}{'engine':<34}{'b1 ms':>8}{'b32 ms':>8}{'×torch b1':>11}{'b32':>7}"
        f"{'×best b1':>10}{'b32':>7}"
    )
    for name, spec in (("mlp", MLP), ("cnn", CNN)):
        source, data = _prepared(name, spec, root, digits)
        x = data.x_eval
        parent = source.load()
        torch_ms = {f"batch_{b}": latency_ms(parent, x[: min(b, 64)], b) for b in (1, 32)}
        ort_ms = _ort_latency(parent, x, root) or torch_ms
        best = {b: min(torch_ms[b], ort_ms[b]) for b in batches}
        rows: list[tuple[str, dict[str, float]]] = [
            ("parent, torch", torch_ms),
            ("parent, onnxruntime (float)", ort_ms),
        ]
        for label, raw in (
            ("quantize [default] (ort int8)", {"name": "quantize"}),
            ("quantize dynamic_int8 (torchao)", {**METHODS[1]}),
        ):
            work = root / f"int8-{name}-{len(rows)}"
            work.mkdir()
            child = compress(parse_method(raw), source, data, work)
            rows.append(
                (label, {f"batch_{b}": latency_ms(child.module, x[:64], b) for b in (1, 32)})
            )
        reference = torch.ao.quantization.quantize_dynamic(
            source.load(),
            {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
            dtype=torch.qint8,
        )
        rows.append(
            (
                "torch quantize_dynamic (x86, ref.)",
                {f"batch_{b}": latency_ms(reference, x[: min(b, 64)], b) for b in (1, 32)},
            )
        )
        for label, ms in rows:
            print(
                f"{name:<6}{label:<34}{ms['batch_1']:>8.3f}{ms['batch_32']:>8.3f}"
                f"{ms['batch_1'] / torch_ms['batch_1']:>11.2f}"
                f"{ms['batch_32'] / torch_ms['batch_32']:>7.2f}"
                f"{ms['batch_1'] / best['batch_1']:>10.2f}"
                f"{ms['batch_32'] / best['batch_32']:>7.2f}",
                flush=True,
            )
    print(
        "×torch = time / the parent's on torch; ×best = time / the parent's on its faster "
        "engine (what runtime auto serves); below 1 is faster than the parent"
    )


def main(int8_only: bool = False) -> None:
    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(THREADS)
    digits = _digits()
    print(
        f"digits: {len(digits[0])} training rows, {len(digits[1])} held-out rows; "
        f"{THREADS} thread(s) for torch and ONNX Runtime; latency in ms (median)"
    )
    with tempfile.TemporaryDirectory(prefix="modelyard-compression-") as tmp:
        root = Path(tmp)
        if not int8_only:
            _methods_table(root, digits)
            print()
        _int8_table(root, digits)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--int8", action="store_true", help="only the int8 table")
    main(int8_only=parser.parse_args().int8)
