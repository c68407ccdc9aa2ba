"""The report: weight statistics, comparisons, the gate and the side-by-side table."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from modelyard.compression import Gate, compare, gate_failure, parse_model, weight_stats
from modelyard.compression.report import side_by_side, slower_message


def _row(accuracy: float, params: int, size: int) -> dict[str, Any]:
    return {
        "size_bytes": size,
        "weight_bytes": size - 100,
        "params": params,
        "nonzero_params": params // 2,
        "latency_ms": {"batch_1": 2.0, "batch_32": 8.0},
        "metric": "accuracy",
        "metrics": {"accuracy": accuracy, "loss": 0.1},
        "rows": 450,
    }


def test_compare_gives_deltas_ratios_and_the_metric_drop() -> None:
    report = compare(_row(0.97, 1000, 4100), _row(0.95, 500, 1100))
    assert report["metric_drop"] == pytest.approx(0.02)
    assert report["ratio"]["params"] == 2.0 and report["ratio"]["size_bytes"] == 4100 / 1100
    assert report["delta"]["accuracy"] == pytest.approx(-0.02)
    assert report["delta"]["latency_ms_batch_1"] == 0.0


def test_the_report_flags_a_child_slower_than_its_parent() -> None:
    child = {**_row(0.95, 500, 1100), "latency_ms": {"batch_1": 3.5, "batch_32": 4.0}}
    report = compare(_row(0.97, 1000, 4100), child)
    speed = report["speed"]
    assert speed["parent_latency_ms"] == report["parent"]["latency_ms"]
    assert speed["child_latency_ms"] == report["child"]["latency_ms"]
    assert speed["slower_at"] == ["batch_1"] and speed["slower_than_parent"] is True
    assert slower_message(report) == (
        "the child is slower than its parent at batch 1: 3.500 ms against 2.000 ms"
    )
    faster = compare(_row(0.97, 1000, 4100), _row(0.95, 500, 1100))
    assert faster["speed"]["slower_than_parent"] is False and faster["speed"]["slower_at"] == []
    assert slower_message(faster) is None
    # Against the parent's faster engine: ONNX Runtime at batch 32 here.
    served = compare(_row(0.97, 1000, 4100), child, {"batch_1": 2.5, "batch_32": 3.0})
    assert served["speed"]["parent_latency_ms"] == {"batch_1": 2.0, "batch_32": 3.0}
    assert served["speed"]["parent_engine"] == {"batch_1": "own", "batch_32": "onnxruntime"}
    assert served["speed"]["slower_at"] == ["batch_1", "batch_32"]
    assert str(slower_message(served)).endswith(
        "4.000 ms against 3.000 ms (the parent on onnxruntime)"
    )


def test_the_gate_fails_only_beyond_the_allowed_drop() -> None:
    report = compare(_row(0.97, 1000, 4100), _row(0.95, 500, 1100))
    assert gate_failure(report, None) is None
    assert gate_failure(report, parse_model(Gate, {"max_metric_drop": 0.03}, "gate")) is None
    reason = gate_failure(report, parse_model(Gate, {"max_metric_drop": 0.01}, "gate"))
    assert reason is not None
    assert "accuracy fell by 0.0200 (from 0.9700 to 0.9500)" in reason and "0.01" in reason


def test_weight_stats_count_shared_weights_once_and_zeros_as_zeros() -> None:
    shared = torch.nn.Linear(4, 4)
    model = torch.nn.Sequential(shared, torch.nn.ReLU(), shared)
    with torch.no_grad():
        shared.weight[0] = 0.0
    stats = weight_stats(model)
    assert stats.params == 20 and stats.nonzero_params == 16
    assert stats.weight_bytes == 80


def test_side_by_side_takes_the_parents_row_from_its_childs_report() -> None:
    report = {**compare(_row(0.97, 1000, 4100), _row(0.96, 1000, 1100)), "dataset": "test"}
    parent = {
        "model": "m",
        "version": 1,
        "format": "safetensors",
        "size": 4100,
        "metrics": {"train_accuracy": 0.99},
        "params": {},
    }
    child = {
        "model": "m",
        "version": 2,
        "format": "safetensors",
        "size": 1100,
        "metrics": {},
        "params": {"report": report, "lineage": {"parent": {"model": "m", "version": 1}}},
    }
    table = side_by_side(parent, child)
    first, second = table["versions"]
    assert first["metrics"]["accuracy"] == 0.97 and second["metrics"]["accuracy"] == 0.96
    assert first["measured_by"] == "the job that made version 2"
    assert table["comparable"] and table["ratio"]["size_bytes"] == 4100 / 1100
    assert table["delta"]["accuracy"] == pytest.approx(-0.01)

    unrelated = {**child, "version": 3, "params": {}}
    table = side_by_side(parent, unrelated)
    assert not table["comparable"]
    assert table["versions"][0]["recorded_metrics"] == {"train_accuracy": 0.99}
    assert table["ratio"] == {"size_bytes": 4100 / 1100}
