"""``modelyard usage``: what was used, as a table and a bar chart in the terminal."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from modelyard.cli._context import connect
from modelyard.cli._output import JsonFlag, print_json, show, stdout, table

_SPAN = re.compile(r"^(\d+)([mhd])$")
_SECONDS = {"m": 60, "h": 3600, "d": 86400}
METRICS = ("requests", "tokens", "rows", "compute", "cpu", "gpu", "cost")
BAR_WIDTH = 40


def parse_span(text: str) -> int:
    """``30m``, ``24h``, ``7d`` as seconds."""
    found = _SPAN.match(text.strip())
    if found is None:
        raise typer.BadParameter("give a number and m, h or d, such as 24h or 7d")
    return int(found.group(1)) * _SECONDS[found.group(2)]


def _label(result: dict[str, Any], groups: list[str]) -> str:
    names = {"key": "api_key_id", "project": "project_id", "principal": "principal_id"}
    parts = [str(result.get(names.get(g, g)) or "-") for g in groups]
    return " / ".join(parts) or "all"


def _value(result: dict[str, Any], metric: str) -> float:
    if metric == "requests":
        return float(result.get("num_model_requests", 0))
    if metric == "tokens":
        return float(result.get("input_tokens", 0) + result.get("output_tokens", 0))
    if metric == "compute":
        return float(result.get("compute_seconds", 0))
    if metric in ("cpu", "gpu"):
        return float(result.get(f"{metric}_seconds", 0))
    if metric == "cost":
        return float((result.get("amount") or {}).get("value", 0))
    return float(result.get(metric, 0))


def chart(rows: list[tuple[str, float]], title: str) -> Table:
    """A horizontal bar per row, scaled to the largest."""
    most = max((v for _, v in rows), default=0.0) or 1.0
    result = Table(title=title, title_justify="left", show_header=False, box=None)
    result.add_column(no_wrap=True)
    result.add_column()
    result.add_column(justify="right")
    for label, value in rows:
        bar = Text("█" * max(1 if value else 0, round(value / most * BAR_WIDTH)), style="cyan")
        result.add_row(label, bar, f"{value:,.6g}")
    return result


def usage(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(help="How far back: 30m, 24h, 7d.")] = "24h",
    bucket: Annotated[str, typer.Option(help="Bucket width: 1m, 1h or 1d.")] = "1h",
    group_by: Annotated[
        list[str] | None,
        typer.Option(
            "--group-by", help="project, key, principal, model, deployment, kind (repeatable)."
        ),
    ] = None,
    metric: Annotated[
        str, typer.Option(help=f"What the chart shows: {', '.join(METRICS)}.")
    ] = "requests",
    costs: Annotated[bool, typer.Option("--costs", help="Show costs instead of usage.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Show usage (or costs) over time: a table of every bucket and group, and a bar chart."""
    if metric not in METRICS:
        raise typer.BadParameter(f"one of {', '.join(METRICS)}", param_hint="--metric")
    groups = [g for raw in group_by or [] for g in raw.split(",") if g]
    start = int(time.time()) - parse_span(since)
    with connect(ctx) as client:
        if costs:
            page = client.usage.costs(start, bucket_width=bucket, group_by=groups)
            metric = "cost"
        else:
            page = client.usage.get(start, bucket_width=bucket, group_by=groups)
    if as_json:
        print_json(page)
        return
    rows: list[tuple[Any, ...]] = []
    totals: dict[str, float] = {}
    per_bucket: list[tuple[str, float]] = []
    for entry in page["data"]:
        when = datetime.fromtimestamp(entry["start_time"], UTC).strftime("%Y-%m-%d %H:%M")
        in_bucket = 0.0
        for result in entry["results"]:
            label = _label(result, groups)
            value = _value(result, metric)
            totals[label] = totals.get(label, 0.0) + value
            in_bucket += value
            if costs:
                amount = result["amount"]
                rows.append((when, label, f"{amount['value']:.6g} {amount['currency']}"))
            else:
                rows.append(
                    (
                        when,
                        label,
                        result["num_model_requests"],
                        result["input_tokens"],
                        result["output_tokens"],
                        result["rows"],
                        round(result["compute_seconds"], 3),
                        round(result["cpu_seconds"] + result["gpu_seconds"], 3),
                    )
                )
        per_bucket.append((when, in_bucket))
    columns = (
        ("Bucket", "Group", "Cost")
        if costs
        else (
            "Bucket",
            "Group",
            "Requests",
            "In tokens",
            "Out tokens",
            "Rows",
            "Compute s",
            "Job s",
        )
    )
    show(table("Costs" if costs else "Usage", columns, rows))
    console = stdout()
    console.print()
    console.print(chart(sorted(totals.items(), key=lambda kv: -kv[1]), f"{metric} by group"))
    console.print()
    console.print(chart(per_bucket, f"{metric} over time"))
