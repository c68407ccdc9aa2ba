"""``modelyard examples DIR``: the files the README's quick start uses, made from real data.

- ``iris.csv``: scikit-learn's iris (150 rows, 4 features, a ``species`` label);
- ``model.safetensors`` and ``spec.json``: a small MLP for iris, fitted here in a second,
  its catalog spec in ``spec.json`` (and in the file's metadata);
- ``digits.npz``: scikit-learn's handwritten digits, arrays ``x`` (1,797 × 64) and ``y``;
- ``sample.npy``: the first three digit images, to send to a deployment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from modelyard.cli._output import print_error, print_note

IRIS_SPEC: dict[str, Any] = {"arch": "mlp", "input_shape": [4], "hidden": [16], "num_outputs": 3}
FILES = ("iris.csv", "model.safetensors", "spec.json", "digits.npz", "sample.npy")


def write_examples(folder: Path) -> list[Path]:
    """Write the quick start's files into ``folder``; returns their paths."""
    import numpy as np
    import torch
    from sklearn.datasets import load_digits, load_iris

    from modelyard.nn import build_model, save_weights

    folder.mkdir(parents=True, exist_ok=True)
    iris = load_iris()
    header = "sepal_length,sepal_width,petal_length,petal_width,species"
    rows = [
        ",".join(f"{v:.1f}" for v in x) + f",{int(y)}"
        for x, y in zip(iris.data, iris.target, strict=True)
    ]
    (folder / "iris.csv").write_text(header + "\n" + "\n".join(rows) + "\n")

    torch.manual_seed(0)
    model = build_model(IRIS_SPEC)
    x = torch.tensor(iris.data, dtype=torch.float32)
    y = torch.tensor(iris.target, dtype=torch.int64)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(200):  # full-batch steps: enough for iris, well under a second
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    save_weights(model.eval(), folder / "model.safetensors", spec=IRIS_SPEC)
    (folder / "spec.json").write_text(json.dumps(IRIS_SPEC) + "\n")

    digits = load_digits()
    images = digits.data.astype(np.float32)
    np.savez(folder / "digits.npz", x=images, y=digits.target.astype(np.int64))
    np.save(folder / "sample.npy", images[:3])
    return [folder / name for name in FILES]


def examples(
    folder: Annotated[
        Path, typer.Argument(help="Where to write the files (created if missing).")
    ] = Path("."),
) -> None:
    """Write the files the README's quick start uses: iris.csv, model.safetensors, spec.json,
    digits.npz and sample.npy (scikit-learn's iris and digits, and a small iris MLP)."""
    try:
        written = write_examples(folder)
    except ModuleNotFoundError as exc:
        print_error(f"{exc.name} is needed to make the examples: pip install scikit-learn")
        raise typer.Exit(1) from None
    for path in written:
        print_note(f"wrote {path}")
