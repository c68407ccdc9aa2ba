"""Turning a train request (structured or flat) into one checked, stored plan.

Everything that can be known before the job runs is checked here, so a spec that does not
fit the data set is refused with a 422 naming the field before anything is queued.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from modelyard.errors import InvalidInput
from modelyard.jobs.train.request import FLAT_KEYS

PLAN_KEYS = {
    "type",
    "model",
    "dataset",
    "label",
    "features",
    "output_model",
    "validation_dataset",
    "num_outputs",
}
CATALOG = ("mlp", "cnn", "rnn", "transformer")
# What the flat form trains when it names an architecture: a model with hidden layers (the
# catalog's bare MLP is linear) and a validation split, so a first model is a useful one.
FLAT_ARCH_DEFAULTS: dict[str, dict[str, Any]] = {"mlp": {"hidden": [128, 64]}}
FLAT_VALIDATION = {"fraction": 0.2, "seed": 0}


def normalize_request(
    body: Mapping[str, Any], model_exists: Callable[[str], bool] = lambda _name: False
) -> dict[str, Any]:
    """Map the flat form onto the structured one; the structured form passes through.

    The flat form's ``model_name`` is an architecture of the catalog (any case: a new model,
    with :data:`FLAT_ARCH_DEFAULTS`) or a model the caller has (``model_exists``: its latest
    version is trained further into a new version of it).
    """
    if not FLAT_KEYS & set(body):
        return dict(body)
    out = {k: v for k, v in body.items() if k not in ("model_name", "data", "learning_rate")}
    out.setdefault("type", "train")
    if "data" in body:
        if "dataset" in body:
            raise InvalidInput("data: give either 'data' or 'dataset', not both")
        out["dataset"] = body["data"]
    name = body.get("model_name")
    if name is not None:
        if "model" in body:
            raise InvalidInput("model_name: give either 'model_name' or 'model', not both")
        if not isinstance(name, str):
            raise InvalidInput("model_name: must be a string")
        if name.lower() in CATALOG:
            arch = name.lower()
            out["model"] = {"arch": arch, **FLAT_ARCH_DEFAULTS.get(arch, {})}
            out.setdefault("validation", dict(FLAT_VALIDATION))
        elif model_exists(name):
            out["model"] = {"from": name}
            out.setdefault("output_model", name)
        else:
            raise InvalidInput(
                f"model_name: there is no model named '{name}' that you can use, and it is not "
                f"an architecture Modelyard trains; name one of {', '.join(CATALOG)} to train "
                "a new model, or one of your models to train it further",
                field="model_name",
            )
    if "learning_rate" in body:
        optimizer = body.get("optimizer", "adam")
        if isinstance(optimizer, str):
            optimizer = {"name": optimizer}
        if not isinstance(optimizer, Mapping):
            raise InvalidInput("optimizer: must be a name or an object")
        out["optimizer"] = {**optimizer, "lr": body["learning_rate"]}
    return out


def split_request(body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate the job's own keys from the training config's keys."""
    plan = {k: v for k, v in body.items() if k in PLAN_KEYS}
    config = {k: v for k, v in body.items() if k not in PLAN_KEYS}
    return plan, config


def infer_arch_defaults(
    model: Mapping[str, Any],
    *,
    x_shape: tuple[int, ...],
    label_kind: str,
    num_classes: int | None,
) -> dict[str, Any]:
    """Fill ``input_shape`` and ``num_outputs`` of a bare catalog spec from the data set."""
    spec = dict(model.get("spec", model))
    spec.setdefault("input_shape", list(x_shape[1:]))
    if "num_outputs" not in spec:
        if label_kind == "classification" and num_classes is not None:
            spec["num_outputs"] = num_classes
        else:
            spec["num_outputs"] = 1
    return spec
