"""``modelyard models``: the model registry from the command line."""

from __future__ import annotations

from collections.abc import Mapping
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
from modelyard.cli._parse import json_object
from modelyard.cli._report import comparison_table, difference_lines
from modelyard.client import Model, ModelVersion
from modelyard.formats import FILE_SUFFIX

app = typer.Typer(
    help="Register models, push and pull versions, set aliases.", no_args_is_help=True
)

NameArg = Annotated[str, typer.Argument(help="The model's name.")]


@app.command("create")
def create(
    ctx: typer.Context,
    name: NameArg,
    task: Annotated[str | None, typer.Option(help="e.g. classification.")] = None,
    description: Annotated[str | None, typer.Option(help="What the model is for.")] = None,
) -> None:
    """Register a model name."""
    with connect(ctx) as client:
        model = client.models.create(name, task=task, description=description)
    print_note(f"[green]Created model[/] {model.name} (id {model.id})")


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List the models you may read."""
    with connect(ctx) as client:
        models = client.models.list()
    if as_json:
        print_json([m.raw for m in models])
        return
    columns = ("Name", "Task", "Latest", "Aliases", "Owner", "Public", "Created")
    rows = [
        (m.name, m.task, m.latest_version, m.aliases, m.owner, m.public, m.created_at)
        for m in models
    ]
    show(table("Models", columns, rows))


@app.command("show")
def show_(ctx: typer.Context, name: NameArg, as_json: JsonFlag = False) -> None:
    """Show a model with its versions and aliases."""
    with connect(ctx) as client:
        model = client.models.get(name)
        versions = client.models.versions(name)
    if as_json:
        print_json({**model.raw, "versions": [v.raw for v in versions]})
        return
    show(_details(model), _versions(versions), _aliases(model))


@app.command("push")
def push(
    ctx: typer.Context,
    name: NameArg,
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            help=f"{', '.join(FILE_SUFFIX.values())}, .tar(.gz) or .zip",
        ),
    ],
    format: Annotated[
        str | None,
        typer.Option(help=f"{', '.join(FILE_SUFFIX)} or hf (default: guessed from the file)."),
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="A JSON file with the architecture spec."),
    ] = None,
    metrics: Annotated[
        str | None, typer.Option(help="Metrics as a JSON object, e.g. '{\"accuracy\": 0.97}'.")
    ] = None,
    params: Annotated[str | None, typer.Option(help="Hyper-parameters as a JSON object.")] = None,
    description: Annotated[str | None, typer.Option(help="What changed.")] = None,
    parent: Annotated[int | None, typer.Option(help="The version this one derives from.")] = None,
    signature: Annotated[
        str | None,
        typer.Option(
            metavar="JSON|FILE",
            help='The tensors of a TorchScript module (which records none): {"inputs": '
            '[{"name", "datatype", "shape"}], "outputs": [...]}, -1 for a size that varies; '
            "inline or a JSON file.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Push even if deployments following the latest version would then serve "
            "other tensors.",
        ),
    ] = False,
) -> None:
    """Upload an artifact as the model's next version (registering NAME on its first push)."""
    spec_obj = json_object(spec.read_text(encoding="utf-8"), "--spec") if spec else None
    signature_obj = _json_or_file(signature, "--signature") if signature else None
    with connect(ctx) as client, transfer_progress(f"Uploading {file.name}") as progress:
        version = client.models.push(
            name,
            file,
            format=format,
            spec=spec_obj,
            metrics=json_object(metrics, "--metrics") if metrics else None,
            params=json_object(params, "--params") if params else None,
            description=description,
            parent=parent,
            signature=signature_obj,
            force=force,
            progress=progress,
        )
    print_note(
        f"[green]Pushed[/] {name} v{version.version} ({version.format}, {human_size(version.size)})"
    )


@app.command("pull")
def pull(
    ctx: typer.Context,
    name: NameArg,
    version: Annotated[str, typer.Argument(help="A version number or an alias.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="A file, or a directory to save into.")
    ] = Path(),
) -> None:
    """Download a version's artifact."""
    v: int | str = int(version) if version.isdigit() else version
    with connect(ctx) as client, transfer_progress(f"Downloading {name}") as progress:
        path = client.models.pull(name, v, output, progress=progress)
    print_note(f"[green]Saved[/] {name} {version} to {path}")


@app.command("compare")
def compare(
    ctx: typer.Context,
    name: NameArg,
    first: Annotated[str, typer.Argument(metavar="V", help="A version number or an alias.")],
    second: Annotated[str, typer.Argument(metavar="W", help="The version to compare it with.")],
    as_json: JsonFlag = False,
) -> None:
    """Compare two versions: size, weights, parameters, non-zeros, latency and metric.

    Measurements come from the compression jobs that made or used the versions; the
    delta line is W - V and the ratio line V / W (how many times smaller or faster W is).
    """
    with connect(ctx) as client:
        report = client.models.compare(name, _ref(first), _ref(second))
    if as_json:
        print_json(report)
        return
    rows = report.get("versions") or []
    show(comparison_table(f"{name}: v{first} vs v{second}", rows))
    labels = [row.get("version") for row in rows] if len(rows) == 2 else [first, second]
    for line in difference_lines(
        labels[0], labels[1], report.get("delta") or {}, report.get("ratio") or {}
    ):
        typer.echo(line)
    if not report.get("comparable"):
        print_note(
            "[yellow]Not measured on the same data set[/]; evaluate both versions on one "
            "data set (a compress or evaluate job) to compare their metric and latency"
        )


def _json_or_file(value: str, option: str) -> dict[str, Any]:
    """A JSON object given inline, or the path of a file holding one."""
    text = value
    if not value.lstrip().startswith("{"):
        path = Path(value)
        if not path.is_file():
            raise typer.BadParameter(
                f"{value!r} is neither a JSON object nor a file", param_hint=option
            )
        text = path.read_text(encoding="utf-8")
    return json_object(text, option)


def _ref(version: str) -> int | str:
    return int(version) if version.isdigit() else version


@app.command("alias")
def alias(
    ctx: typer.Context,
    name: NameArg,
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. production.")],
    version: Annotated[int, typer.Argument(help="The version the alias points to.")],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Move it even if deployments following it would then serve other tensors.",
        ),
    ] = False,
) -> None:
    """Point an alias at a version; deployments that follow it swap to it."""
    with connect(ctx) as client:
        result = client.models.set_alias(name, alias_name, version, force=force)
    print_note(f"{name}@{result.alias} → v{result.version}")


@app.command("rm")
def rm(ctx: typer.Context, name: NameArg) -> None:
    """Delete a model and all its versions."""
    with connect(ctx) as client:
        client.models.delete(name)
    print_note(f"Deleted model {name}")


app.command("acl")(acl_command("model", lambda client: client.models))


def _details(m: Model) -> Table:
    return details(
        {
            "Name": m.name,
            "ID": m.id,
            "Task": m.task,
            "Description": m.description,
            "Latest version": m.latest_version,
            "Owner": m.owner,
            "Public": m.public,
            "Created": m.created_at,
        }
    )


def _versions(versions: list[ModelVersion]) -> Table:
    columns = ("Version", "Format", "Size", "Metrics", "Privacy", "Parent", "Created by", "Created")
    rows = [
        (
            v.version,
            v.format,
            human_size(v.size),
            v.metrics,
            privacy_text(v.privacy),
            v.lineage.parent_version,
            v.created_by,
            v.created_at,
        )
        for v in versions
    ]
    return table("Versions", columns, rows)


def _aliases(m: Model) -> Table:
    return table("Aliases", ("Alias", "Version"), sorted(m.aliases.items()))


def privacy_text(privacy: Mapping[str, Any] | None) -> str | None:
    """``ε=2.99, δ=1e-05 (prv, σ=3.29, C=1)`` for a privately trained version."""
    if not privacy:
        return None
    return (
        f"ε={float(privacy['epsilon']):.3g}, δ={float(privacy['delta']):.2g} "
        f"({privacy.get('accountant')}, σ={float(privacy['noise_multiplier']):.3g}, "
        f"C={float(privacy['max_grad_norm']):.3g})"
    )
