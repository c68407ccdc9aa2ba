"""``modelyard predict``: run a file of inputs through a deployment, print or save the outputs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from modelyard.cli._context import connect
from modelyard.cli._output import print_json, print_note, show, table

if TYPE_CHECKING:
    import numpy.typing as npt

    from modelyard.client import Deployment

# Tables show this much; --output saves everything.
MAX_ROWS = 50
MAX_COLUMNS = 12


def predict(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The deployment's name.")],
    input_file: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            exists=True,
            dir_okay=False,
            help='.npy (one array), .npz (an input per array), .json ({"inputs": ...} or a '
            "nested list) or .csv (rows of numbers).",
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Save the outputs to a .npy, .npz or .json file.", dir_okay=False
        ),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option(help="Pin one of the versions a canary split serves.", show_default=False),
    ] = None,
    binary: Annotated[
        bool | None,
        typer.Option(
            "--binary/--no-binary",
            help="Send binary tensors (Open Inference Protocol) or JSON; default: binary "
            "for inputs over 64 KiB.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outputs as JSON.")] = False,
) -> None:
    """Run inputs from a file through a deployment; print the outputs (or save them)."""
    from modelyard.cli._arrays import as_json as array_json
    from modelyard.cli._arrays import check_output_path, load_inputs, save_outputs

    if output is not None:
        check_output_path(output)
    inputs = load_inputs(input_file)
    with connect(ctx) as client:
        deployment = client.deployments.get(name)
        result = deployment.predict(inputs, version=version, binary=binary)
    outputs = result if isinstance(result, dict) else {_output_name(deployment): result}
    if output is not None:
        save_outputs(output, outputs)
        print_note(f"[green]Saved[/] {', '.join(outputs)} to {output}")
        return
    if as_json:
        print_json({"deployment": name, "outputs": {k: array_json(v) for k, v in outputs.items()}})
        return
    show(*(output_table(k, v) for k, v in outputs.items()))
    rows = max((len(v) if v.ndim else 1) for v in outputs.values())
    if rows > MAX_ROWS:
        print_note(f"Showing {MAX_ROWS} of {rows} rows; --output FILE saves them all.")


def _output_name(deployment: Deployment) -> str:
    """The name of a deployment's one output, as the version serving it declares."""
    names = {t.name for v in deployment.versions for t in v.outputs}
    return names.pop() if len(names) == 1 else "output"


def output_table(name: str, array: npt.NDArray[Any]) -> Table:
    """One output, a row per batch row; wide rows are cut, class scores get their argmax."""
    title = f"{name} ({array.dtype}, shape {tuple(array.shape)})"
    grid = array.reshape(len(array), -1) if array.ndim else array.reshape(1, 1)
    width = grid.shape[1]
    shown = min(width, MAX_COLUMNS)
    columns = ["Row", *(str(i) for i in range(shown))]
    if width > shown:
        columns.append("…")
    scores = array.ndim == 2 and width > 1 and array.dtype.kind == "f"
    if scores:
        columns.append("Argmax")
    rows = []
    for index, row in enumerate(grid[:MAX_ROWS]):
        cells: list[Any] = [index, *(_value(v) for v in row[:shown])]
        if width > shown:
            cells.append("…")
        if scores:
            cells.append(int(row.argmax()))
        rows.append(cells)
    result = table(title, columns, rows)
    # The title would otherwise wrap to the width of a narrow table.
    result.min_width = len(title)
    return result


def _value(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "dtype") and value.dtype.kind == "f":
        return f"{float(value):.4g}"
    return str(value)
