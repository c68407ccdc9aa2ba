"""Versions measured side by side (``models compare``, finished compress and distill jobs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from modelyard.cli._output import human_size, table

COLUMNS = (
    "Version",
    "Format",
    "Size",
    "Weight bytes",
    "Params",
    "Non-zeros",
    "Latency b1 (ms)",
    "Latency b32 (ms)",
    "Metric",
)
_BYTES = ("size_bytes", "weight_bytes")


def comparison_table(title: str, rows: Sequence[Mapping[str, Any]]) -> Table:
    """One row per measured version: size, weights, parameters, latency and metric."""
    return table(title, COLUMNS, [_row(r) for r in rows])


def _row(row: Mapping[str, Any]) -> tuple[Any, ...]:
    latency = row.get("latency_ms") or {}
    return (
        row.get("version"),
        row.get("format"),
        human_size(row.get("size_bytes")),
        human_size(row.get("weight_bytes")),
        row.get("params"),
        row.get("nonzero_params"),
        _ms(latency.get("batch_1")),
        _ms(latency.get("batch_32")),
        metric_text(row),
    )


def _ms(value: Any) -> str | None:
    return f"{value:.3f}" if isinstance(value, int | float) else None


def metric_text(row: Mapping[str, Any]) -> str | None:
    """``accuracy 0.9667``, or the version's recorded metrics where no job measured it."""
    metric = row.get("metric")
    value = (row.get("metrics") or {}).get(metric)
    if isinstance(metric, str) and isinstance(value, int | float):
        return f"{metric} {value:.4f}"
    recorded = row.get("recorded_metrics") or {}
    numbers = [f"{k} {v:.4g}" for k, v in recorded.items() if isinstance(v, int | float)]
    return ", ".join(numbers) if numbers else None


def difference_lines(
    first: Any, second: Any, delta: Mapping[str, Any], ratio: Mapping[str, Any]
) -> list[str]:
    """``delta`` (second - first) and ``ratio`` (first / second) as one line each."""
    lines = []
    if delta:
        parts = [f"{key} {_signed(key, value)}" for key, value in sorted(delta.items())]
        lines.append(f"delta (v{second} - v{first}): " + ", ".join(parts))
    shown = {k: v for k, v in sorted(ratio.items()) if isinstance(v, int | float)}
    if shown:
        parts = [f"{key} {value:.2f}x" for key, value in shown.items()]
        lines.append(f"ratio (v{first} / v{second}): " + ", ".join(parts))
    return lines


def _signed(key: str, value: Any) -> str:
    if not isinstance(value, int | float):
        return str(value)
    if key in _BYTES:
        sign = "-" if value < 0 else "+"
        return sign + human_size(abs(int(value)))
    if isinstance(value, int):
        return f"{value:+d}"
    if key.startswith("latency_ms"):
        return f"{value:+.3f} ms"
    return f"{value:+.4f}"
