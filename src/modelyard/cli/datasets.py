"""``modelyard datasets``: push, list, show, pull and remove data sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from modelyard.cli._acl import acl_command
from modelyard.cli._context import connect
from modelyard.cli._output import (
    JsonFlag,
    details,
    human_size,
    print_json,
    print_note,
    show,
    table,
    transfer_progress,
)
from modelyard.client import Dataset

app = typer.Typer(help="Push, inspect, download and remove data sets.", no_args_is_help=True)


@app.command("push")
def push(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The data set's unique name.")],
    files: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE [FILE2]",
            exists=True,
            dir_okay=False,
            help="A CSV, NPZ, Parquet or JSONL file; or IDX images and labels files.",
        ),
    ],
    format: Annotated[
        str | None, typer.Option(help="csv, npz, parquet, jsonl or idx (default: guessed).")
    ] = None,
    label: Annotated[str | None, typer.Option(help="The target column or array.")] = None,
    description: Annotated[str | None, typer.Option(help="What the data is.")] = None,
) -> None:
    """Upload a data set (two files: IDX images then labels)."""
    if len(files) > 2:
        raise typer.BadParameter(
            "give one file, or two for IDX (images, labels)", param_hint="FILE"
        )
    size = sum(f.stat().st_size for f in files)
    with connect(ctx) as client, transfer_progress(f"Uploading {files[0].name}") as progress:
        dataset = client.datasets.push(
            name,
            files if len(files) == 2 else files[0],
            format=format,
            label=label,
            description=description,
            progress=progress,
        )
    rows = "-" if dataset.num_rows is None else f"{dataset.num_rows:,}"
    print_note(
        f"[green]Pushed[/] {dataset.name}: {dataset.format} {dataset.kind}, {rows} rows, "
        f"{human_size(size)}"
    )


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List the data sets you may read."""
    with connect(ctx) as client:
        datasets = client.datasets.list()
    if as_json:
        print_json([d.raw for d in datasets])
        return
    columns = ("Name", "Format", "Kind", "Rows", "Size", "Label", "Owner", "Public", "Created")
    rows = [
        (
            d.name,
            d.format,
            d.kind,
            d.num_rows,
            human_size(d.size),
            d.label,
            d.owner,
            d.public,
            d.created_at,
        )
        for d in datasets
    ]
    show(table("Data sets", columns, rows))


@app.command("show")
def show_(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The data set's name.")],
    as_json: JsonFlag = False,
) -> None:
    """Show a data set and its schema."""
    with connect(ctx) as client:
        dataset = client.datasets.get(name)
    if as_json:
        print_json(dataset.raw)
        return
    show(_details(dataset), _schema(dataset))


@app.command("pull")
def pull(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The data set's name.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="A file, or a directory to save into.")
    ] = Path(),
) -> None:
    """Download a data set's original file (a tar for IDX)."""
    with connect(ctx) as client, transfer_progress(f"Downloading {name}") as progress:
        path = client.datasets.download(name, output, progress=progress)
    print_note(f"[green]Saved[/] {name} to {path}")


@app.command("rm")
def rm(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="The data set's name.")]
) -> None:
    """Delete a data set."""
    with connect(ctx) as client:
        client.datasets.delete(name)
    print_note(f"Deleted data set {name}")


app.command("acl")(acl_command("data set", lambda client: client.datasets))


def _details(d: Dataset) -> Table:
    return details(
        {
            "Name": d.name,
            "ID": d.id,
            "Description": d.description,
            "Format": d.format,
            "Kind": d.kind,
            "Rows": d.num_rows,
            "Label": d.label,
            "Size": human_size(d.size),
            "SHA-256": d.sha256,
            "Owner": d.owner,
            "Public": d.public,
            "Created": d.created_at,
        }
    )


def _schema(d: Dataset) -> Table:
    columns: list[dict[str, Any]] = d.schema.get("columns") or []
    if columns:
        column_rows = [(c.get("name"), c.get("dtype"), c.get("name") == d.label) for c in columns]
        return table("Schema", ("Column", "Type", "Label"), column_rows)
    arrays: dict[str, dict[str, Any]] = d.schema.get("arrays") or {}
    rows = [(k, a.get("dtype"), _shape(a.get("shape")), k == d.label) for k, a in arrays.items()]
    return table("Schema", ("Array", "Type", "Shape", "Label"), rows)


def _shape(shape: Any) -> str:
    if not isinstance(shape, list):
        return "-" if shape is None else str(shape)
    return str(tuple(shape))


@app.command("budget")
def budget(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The data set's name.")],
    epsilon: Annotated[
        float | None, typer.Option("--epsilon", help="Set the total ε (owner or admin).")
    ] = None,
    delta: Annotated[float | None, typer.Option("--delta", help="Set the total δ.")] = None,
    allow_non_private: Annotated[
        bool, typer.Option(help="Let jobs without privacy use the data set.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Show a data set's privacy budget and ledger, or set it with --epsilon and --delta."""
    if (epsilon is None) != (delta is None):
        raise typer.BadParameter("give --epsilon and --delta together")
    with connect(ctx) as client:
        if epsilon is not None and delta is not None:
            view = client.datasets.set_privacy_budget(
                name, epsilon, delta, allow_non_private=allow_non_private
            )
        else:
            view = client.datasets.privacy_budget(name)
    if as_json:
        print_json(view)
        return
    if view.get("budget") is None:
        print_note(f"{name} has no privacy budget")
        return
    amounts = {k: view[k] for k in ("budget", "spent", "left")}
    rows = [(k, f"{v['epsilon']:.4g}", f"{v['delta']:.3g}") for k, v in amounts.items()]
    parts = [table(f"Privacy budget of {name}", ("", "ε", "δ"), rows)]
    ledger = view.get("ledger") or []
    if ledger:
        columns = ("Job", "Model", "Version", "ε", "δ", "Status")
        entries = [
            (
                e["job_id"],
                e["model"],
                e["version"],
                f"{e['epsilon']:.4g}",
                f"{e['delta']:.3g}",
                e["status"],
            )
            for e in ledger
        ]
        parts.append(table("Ledger", columns, entries))
    show(*parts)
