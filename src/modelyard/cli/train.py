"""``modelyard train``: submit a train job, and optionally follow it to the end."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from modelyard.cli._context import connect
from modelyard.cli._output import print_error, print_json, print_note, show
from modelyard.cli._parse import json_object
from modelyard.cli.jobs import job_tables
from modelyard.client import JobFailedError


def train(
    ctx: typer.Context,
    spec: Annotated[
        str,
        typer.Option(
            help="The architecture: a JSON file such as spec.json, inline JSON, or a catalog "
            "name (mlp, cnn, rnn, transformer; shapes are taken from the data set).",
        ),
    ],
    dataset: Annotated[str, typer.Option(help="The data set to train on.")],
    label: Annotated[
        str | None, typer.Option(help="The target column or array (default: the data set's).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Passes over the data.")] = None,
    optimizer: Annotated[
        str | None, typer.Option(help="sgd, adam, adamw or rmsprop (default adam).")
    ] = None,
    lr: Annotated[float | None, typer.Option(min=0.0, help="Learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Rows per step.")] = None,
    output_model: Annotated[
        str | None,
        typer.Option(help="The model that receives the version (default <dataset>-<arch>)."),
    ] = None,
    validation_split: Annotated[
        float | None,
        typer.Option(min=0.0, max=0.99, help="Share of the rows held out for validation."),
    ] = None,
    validation_dataset: Annotated[
        str | None, typer.Option(help="A second data set to validate on instead.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="A JSON file with more train spec fields (schedule, preprocessing, "
            "early_stopping, …); the flags above override it.",
        ),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Show progress until the job ends, then its result."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the job as JSON.")] = False,
) -> None:
    """Train a model on a data set through a job.

    Without --follow the job's id alone goes to stdout, so `JOB=$(modelyard train ...)`
    works; follow it later with `modelyard jobs events $JOB --follow`.
    """
    body: dict[str, Any] = {"type": "train"}
    if config is not None:
        body.update(json_object(config.read_text(encoding="utf-8"), "--config"))
    body["model"] = _model(spec)
    body["dataset"] = dataset
    flags = {
        "label": label,
        "epochs": epochs,
        "batch_size": batch_size,
        "output_model": output_model,
        "validation_dataset": validation_dataset,
    }
    body.update({k: v for k, v in flags.items() if v is not None})
    if validation_split is not None:
        body["validation"] = {**_section(body.get("validation")), "fraction": validation_split}
    if optimizer is not None or lr is not None:
        section = _section(body.get("optimizer"))
        if optimizer is not None and optimizer != section.get("name"):
            # Another optimizer's hyper-parameters would not fit this one; the rate does.
            section = {"name": optimizer, **({"lr": section["lr"]} if "lr" in section else {})}
        if lr is not None:
            section["lr"] = lr
        body["optimizer"] = section

    with connect(ctx) as client:
        job = client.jobs.create(body)
        if not follow:
            if as_json:
                print_json(job.raw)
            else:
                print_note(
                    f"[green]Submitted job[/] {job.id} ({job.status}); follow it with "
                    f"`modelyard jobs events {job.id} --follow`"
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
    else:
        show(*job_tables(job))


def _model(spec: str) -> dict[str, Any]:
    """The job's ``model`` section from --spec: a file, inline JSON or a catalog name."""
    text = spec.strip()
    path = Path(spec)
    if text.startswith("{"):
        value = json_object(text, "--spec")
    elif path.is_file():
        value = json_object(path.read_text(encoding="utf-8"), "--spec")
    elif text.isidentifier():
        return {"spec": {"arch": text}}
    else:
        raise typer.BadParameter(
            "not a file, a JSON object or an architecture name", param_hint="--spec"
        )
    # A bare architecture spec, or already a model section ({"spec": ...} / {"from": ...}).
    return value if "spec" in value or "from" in value else {"spec": value}


def _section(value: Any) -> dict[str, Any]:
    """A spec section given as an object or by its name alone (``"adam"``)."""
    if isinstance(value, Mapping):
        return dict(value)
    return {"name": value} if isinstance(value, str) else {}
