"""``modelyard jobs``: list, show, follow, read the log of and cancel jobs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.table import Table

from modelyard.cli._context import connect
from modelyard.cli._output import JsonFlag, details, print_json, print_note, show, table
from modelyard.client import Job, JobEvent

app = typer.Typer(help="Follow, inspect and cancel jobs.", no_args_is_help=True)

IdArg = Annotated[str, typer.Argument(metavar="ID", help="The job's id.")]


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(
            help="Only jobs in this state: queued, running, succeeded, failed, cancelled."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List your jobs, newest first (an admin sees everyone's)."""
    with connect(ctx) as client:
        jobs = client.jobs.list(status=status)
    if as_json:
        print_json([j.raw for j in jobs])
        return
    columns = ("ID", "Type", "Status", "Progress", "Data set", "Model", "Owner", "Created")
    rows = [
        (
            j.id,
            j.type,
            j.status,
            f"{j.progress:.0%}",
            j.spec.get("dataset"),
            model_label(j),
            j.owner,
            j.created_at,
        )
        for j in jobs
    ]
    show(table("Jobs", columns, rows))


@app.command("show")
def show_(ctx: typer.Context, job_id: IdArg, as_json: JsonFlag = False) -> None:
    """Show a job: its state, progress, metrics and result."""
    with connect(ctx) as client:
        job = client.jobs.get(job_id)
    if as_json:
        print_json(job.raw)
        return
    show(*job_tables(job))


@app.command("logs")
def logs(ctx: typer.Context, job_id: IdArg) -> None:
    """Print a job's log."""
    with connect(ctx) as client:
        text = client.jobs.logs(job_id)
    typer.echo(text, nl=False)


@app.command("cancel")
def cancel(ctx: typer.Context, job_id: IdArg, as_json: JsonFlag = False) -> None:
    """Ask the server to stop a job."""
    with connect(ctx) as client:
        job = client.jobs.cancel(job_id)
    if as_json:
        print_json(job.raw)
        return
    if job.done:
        print_note(f"Job {job.id} is {job.status}")
    else:
        print_note(f"Cancelling job {job.id} (it stops within seconds)")


@app.command("events")
def events(
    ctx: typer.Context,
    job_id: IdArg,
    after: Annotated[int, typer.Option(min=0, help="Only events numbered above this.")] = 0,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing events until the job ends.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (with --follow: one object per line).")
    ] = False,
) -> None:
    """Print a job's events: status changes, steps, epochs, checkpoints, log lines."""
    with connect(ctx) as client:
        if follow:
            for event in client.jobs.stream(job_id, last_event_id=after):
                if as_json:
                    typer.echo(json.dumps(event.raw, default=str))
                else:
                    typer.echo(event_line(event))
            return
        found = client.jobs.events(job_id, after=after)
    if as_json:
        print_json([e.raw for e in found])
        return
    rows = [(e.seq, e.at, e.type, summary(e)) for e in found]
    show(table("Events", ("#", "At", "Type", "Details"), rows))


def model_label(job: Job) -> str | None:
    """``digits-mlp v3`` once trained, else the model the job will register into."""
    result = job.result
    if result.get("model"):
        version = result.get("version")
        return f"{result['model']} v{version}" if version is not None else str(result["model"])
    name = job.spec.get("output_model")
    return str(name) if name else None


def job_tables(job: Job) -> list[Table]:
    """A job's details, then its metrics (the result's once finished, else the latest)."""
    duration = None
    if job.started_at and job.finished_at:
        duration = f"{(job.finished_at - job.started_at).total_seconds():.1f} s"
    tables = [
        details(
            {
                "ID": job.id,
                "Type": job.type,
                "Status": job.status,
                "Progress": f"{job.progress:.0%}",
                "ETA": None if job.eta_s is None or job.done else f"{job.eta_s:.0f} s",
                "Data set": job.spec.get("dataset"),
                "Model": model_label(job),
                "Epochs run": job.result.get("epochs_run"),
                "Attempt": job.attempt,
                "Error": job.error,
                "Owner": job.owner,
                "Created": job.created_at,
                "Duration": duration,
            }
        )
    ]
    metrics = job.result.get("metrics") or job.metrics
    rows = metric_rows(metrics)
    if rows:
        tables.append(table("Metrics", ("Split", "Metric", "Value"), rows))
    return tables


def metric_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``{"train": {"loss": 0.1}, "val": {...}}`` as ``(split, metric, value)`` rows."""
    rows: list[tuple[str, str, str]] = []
    for split, values in metrics.items():
        if isinstance(values, Mapping):
            rows.extend((split, name, _num(value)) for name, value in values.items())
    return rows


def event_line(event: JobEvent) -> str:
    """One event as a log line: ``#12 14:03:07 epoch  epoch 2/5 train loss=…``."""
    at = event.at.strftime("%H:%M:%S") if event.at else "--:--:--"
    return f"#{event.seq} {at} {event.type:<10} {summary(event)}"


def summary(event: JobEvent) -> str:
    """What an event says, in a few words."""
    data = event.data
    if event.type == "status":
        text = str(data.get("status"))
        extra = data.get("error") or data.get("reason")
        return f"{text}: {extra}" if extra else text
    if event.type == "log":
        return str(data.get("message", ""))
    if event.type == "step":
        return (
            f"epoch {data.get('epoch')} step {data.get('step')} loss {_num(data.get('loss'))} "
            f"lr {_num(data.get('lr'))}"
        )
    if event.type == "epoch":
        epochs = f"/{data['epochs']}" if data.get("epochs") else ""
        parts = [f"epoch {data.get('epoch')}{epochs}"]
        for split in ("train", "val"):
            values = data.get(split)
            if isinstance(values, Mapping) and values:
                parts.append(f"{split} " + " ".join(f"{k}={_num(v)}" for k, v in values.items()))
        return "  ".join(parts)
    return " ".join(f"{k}={_num(v)}" for k, v in data.items())


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
