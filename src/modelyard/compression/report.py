"""What a compression job measures of parent and child, and the gate on the difference.

One :func:`measure` gives a row of the report table::

    {"size_bytes": 105616, "weight_bytes": 104488, "params": 26122, "nonzero_params": 26122,
     "latency_ms": {"batch_1": 0.09, "batch_32": 0.21}, "metric": "accuracy",
     "metrics": {"loss": 0.11, "accuracy": 0.967}, "rows": 360}

:func:`compare` puts two rows side by side with their differences and ratios, and
:func:`gate_failure` says why a child may not be registered. Latency is the median of
repeated forward passes on this machine, with the threads the process has.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelyard.compression.methods import Gate
from modelyard.compression.onnx_module import WeightStats
from modelyard.training import Objective
from modelyard.training.metrics import run_eval

LATENCY_BATCHES = (1, 32)
# Per batch size: one warm-up, then timed runs until the budget is spent (within bounds).
LATENCY_BUDGET_S = 0.5
MIN_RUNS = 5
MAX_RUNS = 200
ROW_KEYS = ("size_bytes", "weight_bytes", "params", "nonzero_params")


def objective_for(y: torch.Tensor, num_outputs: int) -> Objective:
    """The loss and metric of a data set's labels: accuracy for classes, r2 for values."""
    if y.is_floating_point():
        return Objective.for_labels(y, "mse", ("r2",))
    loss = "cross_entropy" if num_outputs > 1 else "bce"
    return Objective.for_labels(y, loss, ("accuracy",))


def metric_name(objective: Objective) -> str:
    """The metric a gate looks at: ``accuracy`` or ``r2`` (both: higher is better)."""
    return objective.metrics[0]


def _storage(tensor: torch.Tensor) -> list[torch.Tensor]:
    """The plain tensors that hold ``tensor`` (its integer data and scales if quantized)."""
    inner = [getattr(tensor, n, None) for n in ("qdata", "scale", "zero_point")]
    found = [t for t in inner if isinstance(t, torch.Tensor)]
    return found or [tensor]


def weight_stats(model: nn.Module) -> WeightStats:
    """Bytes in memory, parameter count and non-zero parameters of ``model``'s weights."""
    own = getattr(model, "weight_stats", None)
    if callable(own):
        stats: WeightStats = own()
        return stats
    total_bytes = params = nonzero = 0
    # parameters() and buffers() list a tensor shared by several modules once.
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        parts = _storage(tensor)
        total_bytes += sum(p.numel() * p.element_size() for p in parts)
        if not tensor.is_floating_point() and getattr(tensor, "qdata", None) is None:
            continue  # counters such as batch norm's num_batches_tracked
        params += tensor.numel()
        values = parts[0] if len(parts) > 1 else tensor
        nonzero += int(torch.count_nonzero(values))
    return WeightStats(total_bytes, params, nonzero)


def latency_ms(model: nn.Module, rows: torch.Tensor, batch: int) -> float:
    """Median milliseconds of one forward pass over ``batch`` rows (repeated from ``rows``)."""
    repeats = -(-batch // rows.shape[0])
    x = rows.repeat(repeats, *([1] * (rows.dim() - 1)))[:batch]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = x.to(device)
    times: list[float] = []
    model.eval()
    with torch.inference_mode():
        model(x)
        budget_end = time.perf_counter() + LATENCY_BUDGET_S
        while len(times) < MAX_RUNS and (len(times) < MIN_RUNS or time.perf_counter() < budget_end):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def onnxruntime_latency(
    model: nn.Module, rows: torch.Tensor, work: Path, *, batches: tuple[int, ...] = LATENCY_BATCHES
) -> dict[str, float] | None:
    """``model``'s latency on ONNX Runtime, exported as ``runtime: auto`` exports it (the
    engine a float catalog version is often served on); None when it cannot be exported
    or run."""
    from modelyard.compression.onnx_module import OnnxModule
    from modelyard.runtimes.onnx_export import export_onnx

    path = work / "latency.onnx"
    try:
        export_onnx(
            model.eval(),
            (rows[:2],),
            path,
            input_names=["input"],
            output_names=["output"],
            fallback=False,
        )
        module = OnnxModule(path, threads=torch.get_num_threads())
    except Exception:
        return None
    return {f"batch_{b}": latency_ms(module, rows[: min(b, 64)], b) for b in batches}


def measure(
    model: nn.Module,
    artifact: Path | None,
    x: torch.Tensor,
    y: torch.Tensor,
    objective: Objective,
    *,
    batches: tuple[int, ...] = LATENCY_BATCHES,
) -> dict[str, Any]:
    """One row of the report: size, weights, latency and metrics of ``model`` on ``x, y``."""
    stats = weight_stats(model)
    metrics = run_eval(model, x, y, objective, batch_size=256)
    return {
        "size_bytes": artifact.stat().st_size if artifact is not None else None,
        "weight_bytes": stats.weight_bytes,
        "params": stats.params,
        "nonzero_params": stats.nonzero_params,
        "latency_ms": {f"batch_{b}": latency_ms(model, x[: min(b, 64)], b) for b in batches},
        "metric": metric_name(objective),
        "metrics": metrics,
        "rows": int(x.shape[0]),
    }


def _ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return float(a) / float(b)
    return None


def compare(
    parent: Mapping[str, Any],
    child: Mapping[str, Any],
    parent_onnxruntime_ms: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Parent and child side by side, with ``delta`` (child - parent) and ``ratio``
    (parent / child: how many times smaller or faster the child is), and ``speed`` (see
    :func:`speed`; ``parent_onnxruntime_ms`` is the parent's latency on ONNX Runtime)."""
    metric = str(parent["metric"])
    parent_value = float(parent["metrics"][metric])
    child_value = float(child["metrics"][metric])
    ratio = {key: _ratio(parent[key], child[key]) for key in ROW_KEYS}
    delta: dict[str, Any] = {
        key: (child[key] - parent[key])
        if parent[key] is not None and child[key] is not None
        else None
        for key in ROW_KEYS
    }
    for batch, value in parent["latency_ms"].items():
        ratio[f"latency_{batch}"] = _ratio(value, child["latency_ms"].get(batch))
        delta[f"latency_ms_{batch}"] = child["latency_ms"].get(batch, 0.0) - value
    delta[metric] = child_value - parent_value
    return {
        "metric": metric,
        "parent": dict(parent),
        "child": dict(child),
        "delta": delta,
        "ratio": ratio,
        "metric_drop": parent_value - child_value,
        "speed": speed(parent["latency_ms"], child["latency_ms"], parent_onnxruntime_ms),
    }


def speed(
    parent: Mapping[str, float],
    child: Mapping[str, float],
    parent_onnxruntime: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Whether the child is slower than its parent, with both latencies::

        {"slower_than_parent": true, "slower_at": ["batch_1"],
         "parent_latency_ms": {"batch_1": 0.04, "batch_32": 0.2},
         "child_latency_ms": {"batch_1": 0.65, "batch_32": 0.1}}

    ``parent_latency_ms`` is the parent's faster engine at each batch size: its own (torch
    for a catalog version), or ONNX Runtime when ``parent_onnxruntime`` is given and
    faster, as ``runtime: auto`` would serve it (``parent_engine`` says which).
    ``slower_at`` lists the batch sizes at which the child's median forward time is above
    that; the child is slower than its parent when the list is not empty.
    """
    fastest = dict(parent)
    engine = dict.fromkeys(parent, "own")
    for batch, value in (parent_onnxruntime or {}).items():
        if batch in fastest and value < fastest[batch]:
            fastest[batch], engine[batch] = value, "onnxruntime"
    slower = [b for b in sorted(fastest) if b in child and child[b] > fastest[b]]
    return {
        "slower_than_parent": bool(slower),
        "slower_at": slower,
        "parent_latency_ms": fastest,
        "parent_engine": engine,
        "child_latency_ms": dict(child),
    }


def slower_message(report: Mapping[str, Any]) -> str | None:
    """A line for the job's log when the child is slower than its parent, else None."""
    speed = report.get("speed") or {}
    if not speed.get("slower_than_parent"):
        return None
    engines = speed.get("parent_engine") or {}
    parts = [
        f"{batch.removeprefix('batch_')}: {speed['child_latency_ms'][batch]:.3f} ms against "
        f"{speed['parent_latency_ms'][batch]:.3f} ms"
        + (" (the parent on onnxruntime)" if engines.get(batch) == "onnxruntime" else "")
        for batch in speed["slower_at"]
    ]
    return "the child is slower than its parent at batch " + "; ".join(parts)


def gate_failure(report: Mapping[str, Any], gate: Gate | None) -> str | None:
    """Why the child fails ``gate``, or None when it passes (or there is no gate)."""
    if gate is None or gate.max_metric_drop is None:
        return None
    drop = float(report["metric_drop"])
    if drop > gate.max_metric_drop:
        metric = report["metric"]
        parent = report["parent"]["metrics"][metric]
        child = report["child"]["metrics"][metric]
        return (
            f"gate: {metric} fell by {drop:.4f} (from {parent:.4f} to {child:.4f}), more than "
            f"max_metric_drop {gate.max_metric_drop:g}"
        )
    return None


def flat_metrics(row: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """A report row as a version's flat ``metrics``: ``eval_accuracy``, ``latency_ms_batch_1``…"""
    out: dict[str, float] = {}
    for name, value in row["metrics"].items():
        out[f"{prefix}eval_{name}"] = float(value)
    for key in ROW_KEYS:
        if row.get(key) is not None:
            out[prefix + key] = float(row[key])
    for batch, value in row["latency_ms"].items():
        out[f"{prefix}latency_ms_{batch}"] = float(value)
    return out


def _measured_row(version: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a compression job measured of ``version``: as its child, or as ``other``'s parent."""
    own = (version.get("params") or {}).get("report")
    if isinstance(own, Mapping) and isinstance(own.get("child"), Mapping):
        return {**own["child"], "dataset": own.get("dataset"), "measured_by": "its own job"}
    theirs = (other.get("params") or {}).get("report")
    lineage = (other.get("params") or {}).get("lineage") or {}
    parent = lineage.get("parent") or {}
    if (
        isinstance(theirs, Mapping)
        and parent.get("model") == version.get("model")
        and parent.get("version") == version.get("version")
    ):
        measured_by = f"the job that made version {other.get('version')}"
        return {**theirs["parent"], "dataset": theirs.get("dataset"), "measured_by": measured_by}
    return None


def side_by_side(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Two versions' report rows, with ``delta`` (second - first) and ``ratio`` (first /
    second).

    Each argument describes a version: ``model``, ``version``, ``format``, ``size``,
    ``metrics`` and ``params``. Measurements come from the compression jobs' reports; a
    version no job measured shows its artifact size and recorded metrics only, and
    ``comparable`` is false unless both rows were measured on the same data set.
    """
    rows = []
    for version, other in ((first, second), (second, first)):
        measured = _measured_row(version, other) or {
            "metrics": {},
            "latency_ms": {},
            "recorded_metrics": dict(version.get("metrics") or {}),
            "measured_by": None,
            "dataset": None,
        }
        row = {
            "version": version.get("version"),
            "format": version.get("format"),
            **{key: measured.get(key) for key in ROW_KEYS},
            "size_bytes": version.get("size"),
            "latency_ms": measured.get("latency_ms", {}),
            "metric": measured.get("metric"),
            "metrics": measured.get("metrics", {}),
            "dataset": measured.get("dataset"),
            "measured_by": measured.get("measured_by"),
        }
        if "recorded_metrics" in measured:
            row["recorded_metrics"] = measured["recorded_metrics"]
        rows.append(row)
    a, b = rows
    delta: dict[str, Any] = {}
    ratio: dict[str, Any] = {}
    for key in ROW_KEYS:
        if isinstance(a[key], int | float) and isinstance(b[key], int | float):
            delta[key] = b[key] - a[key]
            ratio[key] = _ratio(a[key], b[key])
    for batch in set(a["latency_ms"]) & set(b["latency_ms"]):
        delta[f"latency_ms_{batch}"] = b["latency_ms"][batch] - a["latency_ms"][batch]
        ratio[f"latency_{batch}"] = _ratio(a["latency_ms"][batch], b["latency_ms"][batch])
    for name in set(a["metrics"]) & set(b["metrics"]):
        delta[name] = b["metrics"][name] - a["metrics"][name]
    return {
        "versions": rows,
        "delta": delta,
        "ratio": ratio,
        "comparable": a["dataset"] is not None and a["dataset"] == b["dataset"],
    }
