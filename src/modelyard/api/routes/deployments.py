"""Deployments: create, list, show, change (hot swap), delete, predict."""

from __future__ import annotations

import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Body, Response

from modelyard.api.deps import CallerDep, Limit, Offset, PlatformDep, authorize_inference
from modelyard.api.lean import json_response, lean_post
from modelyard.api.schemas.common import AclBody, Page
from modelyard.api.schemas.deployments import DeploymentCreate, DeploymentOut, PredictIn, PredictOut
from modelyard.errors import InvalidInput, ModelyardError
from modelyard.serving.manager import Live
from modelyard.usage.meter import rows_of

router = APIRouter(prefix="/api/v1/deployments", tags=["deployments"])


FORCE_DOC = (
    'With "force": true a swap to versions that take or return other tensors than the '
    "deployment serves now is made anyway (otherwise 409)."
)


def _force(body: dict[str, Any]) -> bool:
    force = body.pop("force", False)
    if not isinstance(force, bool):
        raise InvalidInput("force: must be true or false", field="force")
    return force


@router.post(
    "",
    status_code=201,
    response_model=DeploymentOut,
    summary="Deploy a model version (loaded and warmed up before this returns)",
    description="A deployment that does not load is refused (422) and not stored; so is a "
    "pipeline whose stages do not fit. A traffic split between versions that take or return "
    "other tensors is refused (409) unless forced. " + FORCE_DOC,
)
async def create_deployment(
    body: DeploymentCreate, platform: PlatformDep, caller: CallerDep
) -> DeploymentOut:
    raw = {k: v for k, v in body.model_dump().items() if k != "name"}
    force = _force(raw)
    row, live = await platform.deployment_facade.create(caller, body.name, raw, force=force)
    return DeploymentOut.of(row, live)


@router.get("", response_model=Page[DeploymentOut])
def list_deployments(
    platform: PlatformDep, caller: CallerDep, limit: Limit = 100, offset: Offset = 0
) -> Page[DeploymentOut]:
    rows, total = platform.deployment_facade.list(caller, limit, offset)
    items = [DeploymentOut.of(row, live) for row, live in rows]
    return Page[DeploymentOut](items=items, total=total)


@router.get("/{name}", response_model=DeploymentOut)
def get_deployment(name: str, platform: PlatformDep, caller: CallerDep) -> DeploymentOut:
    return DeploymentOut.of(*platform.deployment_facade.get(caller, name))


@router.patch(
    "/{name}",
    response_model=DeploymentOut,
    summary="Change a deployment; a new version is warmed up before traffic moves",
    description="A change that does not load is refused (422) and the deployment goes on "
    "serving as before. " + FORCE_DOC,
)
async def update_deployment(
    name: str,
    platform: PlatformDep,
    caller: CallerDep,
    changes: Annotated[
        dict[str, Any], Body(examples=[{"version": "2"}, {"version": "3", "force": True}])
    ],
) -> DeploymentOut:
    changes = dict(changes)
    force = _force(changes)
    row, live = await platform.deployment_facade.update(caller, name, changes, force=force)
    return DeploymentOut.of(row, live)


@router.delete("/{name}", status_code=204, response_class=Response)
async def delete_deployment(name: str, platform: PlatformDep, caller: CallerDep) -> Response:
    await platform.deployment_facade.delete(caller, name)
    return Response(status_code=204)


@router.get("/{name}/acl", response_model=AclBody)
def get_deployment_acl(name: str, platform: PlatformDep, caller: CallerDep) -> AclBody:
    return AclBody.model_validate(platform.deployments.acl.get(caller, name))


@router.put("/{name}/acl", response_model=AclBody)
def set_deployment_acl(
    name: str, body: AclBody, platform: PlatformDep, caller: CallerDep
) -> AclBody:
    grants = body.entries()
    return AclBody.model_validate(platform.deployments.acl.set(caller, name, body.public, grants))


@lean_post(
    router,
    "/{name}/predict",
    response_model=PredictOut,
    summary='Predict with plain JSON: {"inputs": ...} → {"outputs": ...}',
)
async def predict(name: str, body: PredictIn, platform: PlatformDep, caller: CallerDep) -> Response:
    await authorize_inference(platform, caller, name)
    deployments = platform.deployment_facade
    live = await deployments.loaded(name)
    inputs = _as_arrays(body.inputs, live)
    deadline = time.monotonic() + live.spec.timeout_ms / 1000
    ticket = await platform.usage.admit(caller, name, "inference")
    try:
        result = await deployments.infer(name, inputs, version=body.version, deadline=deadline)
    except ModelyardError as exc:
        ticket.failed(exc.status)
        raise
    ticket.done(version=result.version, model=live.spec.model, rows=rows_of(inputs))
    # PredictOut's shape, written without building the model: the outputs are plain lists.
    answer = {
        "deployment": name,
        "model_version": result.version,
        "outputs": {k: np.asarray(v).tolist() for k, v in result.outputs.items()},
    }
    response = json_response(answer)
    if ticket.headers:
        response.headers.update(ticket.headers)
    return response


def _as_arrays(raw: list[Any] | dict[str, list[Any]], live: Live) -> dict[str, np.ndarray]:
    named = raw if isinstance(raw, dict) else None
    if named is None:
        names = _input_names(live)
        if len(names) != 1:
            raise InvalidInput(f"inputs: this deployment takes several inputs {names}; name them")
        named = {names[0]: raw}  # type: ignore[dict-item]
    arrays: dict[str, np.ndarray] = {}
    for key, value in named.items():
        try:
            array = np.asarray(value)
        except ValueError as exc:
            raise InvalidInput(f"inputs.{key}: ragged nested lists ({exc})") from None
        if array.dtype == object:
            raise InvalidInput(f"inputs.{key}: rows must all have the same length")
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        arrays[key] = array
    return arrays


def _input_names(live: Live) -> list[str]:
    if live.routes:
        return [t.name for t in live.routes[0][0].runtime.inputs]
    return ["input"]
