"""``Client.fit``: train on in-memory arrays with one call, the way Keras users expect."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from modelyard.client._job import Job

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from modelyard.client._client import Client


def fit(
    client: Client,
    spec: Mapping[str, Any] | str,
    x: ArrayLike,
    y: ArrayLike,
    *,
    epochs: int,
    validation_split: float,
    validation_data: tuple[ArrayLike, ArrayLike] | None,
    batch_size: int | None,
    optimizer: str | Mapping[str, Any],
    lr: float,
    loss: str | Mapping[str, Any] | None,
    dataset_name: str | None,
    output_model: str | None,
    progress: bool,
    train_options: Mapping[str, Any],
) -> Job:
    """Upload ``x``/``y`` as a data set, train on it through a job, wait, return the job."""
    model = {"spec": dict(spec)} if isinstance(spec, Mapping) else {"spec": {"arch": spec}}
    if validation_data is not None and validation_split:
        raise ValueError("give validation_split or validation_data, not both")
    name = dataset_name or _fresh_name(str(model["spec"].get("arch", "model")))
    client.datasets.push_arrays(name, x=x, y=y, label="y")
    body: dict[str, Any] = {
        "type": "train",
        "model": model,
        "dataset": name,
        "label": "y",
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer": (
            {"name": optimizer, "lr": lr} if isinstance(optimizer, str) else {"lr": lr, **optimizer}
        ),
    }
    if validation_data is not None:
        x_val, y_val = validation_data
        client.datasets.push_arrays(f"{name}-val", x=x_val, y=y_val, label="y")
        body["validation_dataset"] = f"{name}-val"
    elif "validation_dataset" not in train_options:
        body["validation"] = {"fraction": validation_split}
    if loss is not None:
        body["loss"] = loss
    if output_model is not None:
        body["output_model"] = output_model
    body.update(train_options)
    return client.jobs.create(body).wait(progress=progress)


def _fresh_name(arch: str) -> str:
    """A data set name that will not collide: ``fit-mlp-20240501-120000-3fa2``."""
    return f"fit-{arch}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
