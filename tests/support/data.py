"""Real data sets and tiny real models for tests (scikit-learn ships the data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def iris_csv(path: Path, marker: str = "sepal_length") -> Path:
    """scikit-learn's iris as a CSV with a ``species`` label column."""
    from sklearn.datasets import load_iris

    data = load_iris()
    header = f"{marker},sepal_width,petal_length,petal_width,species"
    rows = [
        ",".join(f"{v:.1f}" for v in x) + f",{int(y)}"
        for x, y in zip(data.data, data.target, strict=True)
    ]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def digits_npz(path: Path) -> Path:
    """scikit-learn's digits as an NPZ with arrays ``x`` (N×64) and ``y``."""
    from sklearn.datasets import load_digits

    data = load_digits()
    np.savez(path, x=data.data.astype(np.float32), y=data.target.astype(np.int64))
    return path


MLP_SPEC = {"arch": "mlp", "input_shape": [4], "hidden": [16], "num_outputs": 3}


def mlp_safetensors(path: Path, spec: dict[str, object] | None = None) -> Path:
    """A catalog MLP's weights as safetensors, its spec in the file's metadata."""
    from modelyard.nn import build_model, save_weights

    spec = spec or MLP_SPEC
    save_weights(build_model(spec), path, spec=spec)
    return path


def spec_json(spec: dict[str, object] | None = None) -> str:
    return json.dumps(spec or MLP_SPEC)
