"""Explanations of a deployment's predictions: ``POST /api/v1/deployments/{name}/explain``
and KServe's v1 ``POST /v1/models/{name}:explain``.

Both go through the deployment's own access checks (the 'infer' scope; 404 for a caller
who may not read it) and run on the version it serves, off the event loop, with the cost
bounded by the server's settings (see :mod:`modelyard.serving.explain`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from modelyard.api.deps import CallerDep, PlatformDep, authorize_inference
from modelyard.api.routes.deployments import _as_arrays
from modelyard.api.schemas.explain import (
    ExplainFields,
    ExplainIn,
    ExplainOut,
    KServeExplainIn,
    KServeExplainOut,
    KServeExplanation,
)
from modelyard.auth.access import Caller
from modelyard.db.tables import Dataset, ModelVersion
from modelyard.errors import InvalidInput
from modelyard.platform import Platform
from modelyard.serving.explain import Explanation, feature_names

router = APIRouter(prefix="/api/v1/deployments", tags=["deployments"])
kserve_router = APIRouter(prefix="/v1", tags=["explanations (KServe v1)"])

EXPLAIN_DOC = (
    "Attributions of one output score (target: a class index, default the predicted one) "
    "to every input value, in the inputs' shape: integrated_gradients (with its convergence "
    "delta) and saliency on versions running on torch, occlusion and kernel_shap on every "
    "runtime. A table model's answer names the features. Requests over the server's bounds "
    "(MODELYARD_EXPLAIN_*: rows, n_steps, n_samples, model rows in all) are refused with "
    "422 naming the field."
)


@router.post(
    "/{name}/explain",
    response_model=ExplainOut,
    summary="Explain predictions: attributions per input value",
    description=EXPLAIN_DOC,
)
async def explain(
    name: str, body: ExplainIn, platform: PlatformDep, caller: CallerDep
) -> ExplainOut:
    inputs = await _inputs(platform, caller, name, body.inputs)
    version, result, features = await _explain(platform, name, inputs, body)
    named = isinstance(body.inputs, dict)
    attributions = {k: v.tolist() for k, v in result.attributions.items()}
    return ExplainOut(
        deployment=name,
        model_version=version.version,
        method=result.method,
        output=result.output,
        target=result.target,
        attributions=attributions if named else next(iter(attributions.values())),
        convergence_delta=result.convergence_delta,
        feature_names=features,
    )


@kserve_router.post(
    "/models/{name}:explain",
    response_model=KServeExplainOut,
    summary="Explain predictions (KServe v1 protocol)",
    description=EXPLAIN_DOC + " Errors are problem+json documents, as on /api/v1.",
)
async def kserve_explain(
    name: str, body: KServeExplainIn, platform: PlatformDep, caller: CallerDep
) -> KServeExplainOut:
    rows = body.instances
    raw: list[Any] | dict[str, list[Any]] = rows
    named = bool(rows) and all(isinstance(row, dict) for row in rows)
    if named:
        raw = {key: [row.get(key) for row in rows] for key in rows[0]}
    inputs = await _inputs(platform, caller, name, raw)
    version, result, features = await _explain(platform, name, inputs, body)
    explanations = []
    for index, target in enumerate(result.target):
        per_input = {k: v[index].tolist() for k, v in result.attributions.items()}
        delta = result.convergence_delta
        explanations.append(
            KServeExplanation(
                target=target,
                attributions=per_input if named else next(iter(per_input.values())),
                convergence_delta=delta[index] if delta is not None else None,
            )
        )
    return KServeExplainOut(
        model_name=name,
        model_version=version.version,
        method=result.method,
        output=result.output,
        feature_names=features,
        explanations=explanations,
    )


async def _inputs(
    platform: Platform, caller: Caller, name: str, raw: list[Any] | dict[str, list[Any]]
) -> dict[str, np.ndarray]:
    await authorize_inference(platform, caller, name)
    live = platform.serving.get(name)
    if not raw:
        raise InvalidInput("inputs: send at least one row", field="inputs")
    return _as_arrays(raw, live)


async def _explain(
    platform: Platform, name: str, inputs: dict[str, np.ndarray], body: ExplainFields
) -> tuple[ModelVersion, Explanation, list[str] | None]:
    served, result = await platform.serving.explain(
        name, inputs, body.options(), version=body.version
    )
    version = served.version
    features = None
    if len(result.attributions) == 1:
        only = next(iter(result.attributions.values()))
        if only.ndim == 2 and version.dataset_id is not None:
            dataset = await run_in_threadpool(_training_dataset, platform, version.dataset_id)
            features = feature_names(dataset, version.params, only.shape[1])
    return version, result, features


def _training_dataset(platform: Platform, dataset_id: str) -> dict[str, Any] | None:
    """The kind, schema and label of a version's training data set (None once deleted).

    The column names are part of the model's interface, as its signature is: callers of the
    deployment see them whether or not they may read the data set itself.
    """
    with platform.db.session() as session:
        row = session.execute(
            select(Dataset.kind, Dataset.schema, Dataset.label).where(Dataset.id == dataset_id)
        ).first()
    if row is None:
        return None
    return {"kind": row.kind, "schema": row.schema, "label": row.label}
