"""``modelyard explain``: which input values drove a deployment's predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from modelyard.cli._context import connect
from modelyard.cli._output import print_json, print_note, show, table

METHODS = ("integrated_gradients", "saliency", "occlusion", "kernel_shap")
# The table shows the strongest attributions of each row; --output saves them all.
TOP = 8
MAX_ROWS = 20


def explain(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The deployment's name.")],
    input_file: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            exists=True,
            dir_okay=False,
            help='.npy, .npz, .json ({"inputs": ...} or a nested list) or .csv rows, as for '
            "predict.",
        ),
    ],
    method: Annotated[
        str,
        typer.Option(
            "--method",
            "-m",
            help="integrated_gradients or saliency (torch versions), occlusion or kernel_shap "
            "(every runtime).",
        ),
    ] = "integrated_gradients",
    target: Annotated[
        int | None,
        typer.Option(help="The class index to explain; default each row's prediction."),
    ] = None,
    baseline: Annotated[
        float | None, typer.Option(help="The reference value of every input; default 0.")
    ] = None,
    n_steps: Annotated[
        int | None, typer.Option(help="Integrated gradients' steps (default 50).")
    ] = None,
    n_samples: Annotated[
        int | None, typer.Option(help="Kernel SHAP's samples per row (default 200).")
    ] = None,
    window: Annotated[
        int | None, typer.Option(help="Occlusion's window size in each dimension (default 1).")
    ] = None,
    stride: Annotated[
        int | None, typer.Option(help="Occlusion's step (default the window).")
    ] = None,
    version: Annotated[
        str | None,
        typer.Option(help="Pin one of the versions a canary split serves.", show_default=False),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Save the attributions to a .npy, .npz or .json file.",
            dir_okay=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """Explain a deployment's predictions: an attribution per input value (Captum)."""
    from modelyard.cli._arrays import check_output_path, load_inputs, save_outputs

    if method not in METHODS:
        raise typer.BadParameter(f"choose one of {', '.join(METHODS)}", param_hint="--method")
    if output is not None:
        check_output_path(output)
    inputs = load_inputs(input_file)
    options = {
        k: v
        for k, v in {
            "n_steps": n_steps,
            "n_samples": n_samples,
            "window": window,
            "stride": stride,
        }.items()
        if v is not None
    }
    with connect(ctx) as client:
        deployment = client.deployments.get(name)
        result = deployment.explain(
            inputs, method=method, target=target, baseline=baseline, version=version, **options
        )
    attributions = result.attributions
    named = attributions if isinstance(attributions, dict) else {"attributions": attributions}
    if output is not None:
        save_outputs(output, named)
        print_note(f"[green]Saved[/] the attributions of {name} to {output}")
        return
    if as_json:
        print_json(result.raw)
        return
    for key, values in named.items():
        show(_table(key, values, result.target, result.convergence_delta, result.feature_names))
    rows = len(result.target)
    if rows > MAX_ROWS:
        print_note(f"Showing {MAX_ROWS} of {rows} rows; --output FILE saves them all.")


def _table(
    name: str, values: Any, targets: list[int | None], delta: Any, features: list[str] | None
) -> Any:
    """Per row: the target and the values with the largest attributions, strongest first."""
    flat = values.reshape(len(values), -1)
    columns = ["Row", "Target", f"Strongest attributions (of {flat.shape[1]})"]
    if delta is not None:
        columns.append("Delta")
    rows = []
    for index, row in enumerate(flat[:MAX_ROWS]):
        order = abs(row).argsort()[::-1][:TOP]
        label = (lambda i: features[i]) if features else (lambda i: f"[{i}]")
        strongest = ", ".join(f"{label(int(i))} {row[i]:+.3g}" for i in order)
        cells: list[Any] = [index, targets[index], strongest]
        if delta is not None:
            cells.append(f"{float(delta[index]):.2g}")
        rows.append(cells)
    return table(f"{name} ({', '.join(str(d) for d in values.shape)})", columns, rows)
