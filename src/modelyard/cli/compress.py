"""``modelyard compress`` and ``modelyard distill``: make a smaller or faster version
through a job, and optionally follow it to its report."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from modelyard.cli._context import connect
from modelyard.cli._output import print_error, print_json, print_note, show
from modelyard.cli._parse import json_object
from modelyard.cli._report import comparison_table, difference_lines
from modelyard.cli.jobs import job_tables
from modelyard.client import Client, Job, JobFailedError


class Method(StrEnum):
    """What ``modelyard compress`` does to the version."""

    quantize = "quantize"
    prune = "prune"
    cast = "cast"
    export = "export"


# Which flags each method reads; a flag given to another method is refused.
_METHOD_FLAGS = {
    "--scheme": (Method.quantize,),
    "--kind": (Method.prune,),
    "--sparsity": (Method.prune,),
    "--amount": (Method.prune,),
    "--dtype": (Method.cast,),
    "--format": (Method.export,),
}

VersionOpt = Annotated[str, typer.Option("--version", help="A version number or an alias.")]
OutputOpt = Annotated[
    str | None, typer.Option(help="The model that receives the new version (default: the source).")
]
DropOpt = Annotated[
    float | None,
    typer.Option(min=0.0, help="Refuse a child whose metric falls by more than this."),
]
FollowOpt = Annotated[
    bool, typer.Option("--follow", "-f", help="Show progress until the job ends, then its report.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the job as JSON.")]


def compress(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The source model.")],
    version: VersionOpt,
    method: Annotated[Method, typer.Option(help="What to do to the version.")],
    eval_dataset: Annotated[
        str, typer.Option(help="The data set parent and child are measured on.")
    ],
    scheme: Annotated[
        str | None,
        typer.Option(
            help="quantize: dynamic_int8 (default), weight_int8, weight_int4 or static_int8."
        ),
    ] = None,
    kind: Annotated[
        str | None, typer.Option(help="prune: unstructured (default) or structured.")
    ] = None,
    sparsity: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="prune, unstructured: share of weights zeroed."),
    ] = None,
    amount: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="prune, structured: share of units removed."),
    ] = None,
    dtype: Annotated[str | None, typer.Option(help="cast: float16 (default) or bfloat16.")] = None,
    format: Annotated[
        str | None, typer.Option(help="export: onnx (default), torchscript or torch_export.")
    ] = None,
    max_metric_drop: DropOpt = None,
    output_model: OutputOpt = None,
    follow: FollowOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Quantize, prune, cast or export a version into a new one, measured against it.

    Without --follow the job's id alone goes to stdout, so `JOB=$(modelyard compress ...)`
    works; follow it later with `modelyard jobs events $JOB --follow`.
    """
    flags = {
        "--scheme": scheme,
        "--kind": kind,
        "--sparsity": sparsity,
        "--amount": amount,
        "--dtype": dtype,
        "--format": format,
    }
    for flag, value in flags.items():
        if value is not None and method not in _METHOD_FLAGS[flag]:
            raise typer.BadParameter(
                f"{flag} applies to --method {_METHOD_FLAGS[flag][0].value}, not {method.value}",
                param_hint=flag,
            )
    spec = _method(method, scheme, kind, sparsity, amount, dtype, format)
    gate = {"max_metric_drop": max_metric_drop} if max_metric_drop is not None else None
    _run(
        ctx,
        lambda client: client.jobs.compress(
            name, _ref(version), spec, eval_dataset, gate=gate, output_model=output_model
        ),
        follow=follow,
        as_json=as_json,
    )


def distill(
    ctx: typer.Context,
    teacher: Annotated[str, typer.Argument(help="The teacher model.")],
    version: VersionOpt,
    student: Annotated[
        Path,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="A JSON file with the student's catalog spec (its input_shape and "
            "num_outputs default to the teacher's).",
        ),
    ],
    dataset: Annotated[str, typer.Option(help="The data set the student learns on.")],
    eval_dataset: Annotated[
        str | None,
        typer.Option(help="The data set teacher and student are measured on (default: --dataset)."),
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(min=0.0, help="Softens the teacher's targets (default 4).")
    ] = None,
    alpha: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Weight of the teacher's targets (default 0.7)."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Passes over the data (30).")] = None,
    max_metric_drop: DropOpt = None,
    output_model: OutputOpt = None,
    follow: FollowOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Distill a teacher version into a smaller catalog student, measured against it."""
    raw = json_object(student.read_text(encoding="utf-8"), "--student")
    spec = raw["spec"] if isinstance(raw.get("spec"), dict) else raw
    gate = {"max_metric_drop": max_metric_drop} if max_metric_drop is not None else None
    _run(
        ctx,
        lambda client: client.jobs.distill(
            teacher,
            _ref(version),
            spec,
            dataset,
            eval_dataset=eval_dataset,
            temperature=temperature,
            alpha=alpha,
            epochs=epochs,
            gate=gate,
            output_model=output_model,
        ),
        follow=follow,
        as_json=as_json,
    )


def _method(
    method: Method,
    scheme: str | None,
    kind: str | None,
    sparsity: float | None,
    amount: float | None,
    dtype: str | None,
    format: str | None,
) -> dict[str, Any]:
    """The job's ``method`` object from the flags; the server checks the values."""
    if method is Method.quantize:
        return {"name": "quantize", "scheme": scheme or "dynamic_int8"}
    if method is Method.cast:
        return {"name": "cast", "dtype": dtype or "float16"}
    if method is Method.export:
        return {"name": "export", "format": format or "onnx"}
    kind = kind or ("structured" if amount is not None else "unstructured")
    if kind == "structured":
        if sparsity is not None:
            raise typer.BadParameter("structured pruning takes --amount", param_hint="--sparsity")
        if amount is None:
            raise typer.BadParameter("structured pruning needs --amount", param_hint="--amount")
        return {"name": "prune", "kind": kind, "amount": amount}
    if amount is not None:
        raise typer.BadParameter(f"{kind} pruning takes --sparsity", param_hint="--amount")
    if sparsity is None:
        raise typer.BadParameter(f"{kind} pruning needs --sparsity", param_hint="--sparsity")
    return {"name": "prune", "kind": kind, "sparsity": sparsity}


def _ref(version: str) -> int | str:
    return int(version) if version.isdigit() else version


def _run(
    ctx: typer.Context, submit: Callable[[Client], Job], *, follow: bool, as_json: bool
) -> None:
    """Submit the job; print its id, or follow it and show its report."""
    with connect(ctx) as client:
        job = submit(client)
        if not follow:
            if as_json:
                print_json(job.raw)
            else:
                print_note(
                    f"[green]Submitted {job.type} job[/] {job.id} ({job.status}); follow it "
                    f"with `modelyard jobs events {job.id} --follow`"
                )
                typer.echo(job.id)
            return
        print_note(f"Job {job.id} submitted; following it")
        try:
            job.wait(progress=True)
        except JobFailedError as exc:
            if as_json:
                print_json(exc.job.raw)
            else:
                show(*job_tables(exc.job))
            print_error(f"Job {job.id} {exc.job_status}: {exc.error or 'no reason given'}")
            print_error(f"Its log: modelyard jobs logs {job.id}")
            raise typer.Exit(1) from None
    if as_json:
        print_json(job.raw)
        return
    show(*job_tables(job))
    _show_report(job)


def _show_report(job: Job) -> None:
    """The finished job's parent and child rows, then their differences."""
    report = job.result.get("report")
    if not isinstance(report, dict) or not isinstance(report.get("child"), dict):
        return
    source = job.spec.get("source") or job.spec.get("teacher") or {}
    parent = {**report["parent"], "version": source.get("version")}
    child = {**report["child"], "version": job.result.get("version")}
    typer.echo()
    show(comparison_table("Report", [parent, child]))
    lines = difference_lines(
        parent["version"], child["version"], report.get("delta") or {}, report.get("ratio") or {}
    )
    for line in lines:
        typer.echo(line)
