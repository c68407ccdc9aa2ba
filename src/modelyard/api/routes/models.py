"""Models, versions (streamed artifact upload and download) and aliases."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from modelyard.api.deps import CallerDep, Limit, Offset, PlatformDep
from modelyard.api.schemas.common import AclBody, Page
from modelyard.api.schemas.models import (
    AliasOut,
    AliasSet,
    ModelCreate,
    ModelOut,
    ModelUpdate,
    VersionOut,
)
from modelyard.api.uploads import stage_request
from modelyard.auth.access import Permission, Scope
from modelyard.db.tables import Model
from modelyard.errors import InvalidInput
from modelyard.formats import FILE_SUFFIX
from modelyard.naming import MAX_VERSION
from modelyard.platform import Platform
from modelyard.registry.service import Candidate, VersionMeta
from modelyard.serving.compat import Interface

router = APIRouter(prefix="/api/v1/models", tags=["models"])

ARTIFACT_DOC = {
    "requestBody": {
        "description": (
            "The artifact, streamed as the raw body: .safetensors (with a spec), TorchScript "
            ".pt, torch.export .pt2, .onnx, or a tar/zip of spec.json + model.safetensors."
        ),
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _model_out(platform: Platform, rows: list[Model]) -> list[ModelOut]:
    ids = [r.id for r in rows]
    latest = platform.registry.latest_versions(ids)
    aliases = platform.registry.aliases_of(ids)
    return [ModelOut.of(r, latest[r.id], aliases[r.id]) for r in rows]


def _json_param(raw: str | None, name: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{name}: not valid JSON ({exc.msg} at position {exc.pos})") from exc
    if not isinstance(value, dict):
        raise InvalidInput(f"{name}: must be a JSON object")
    return value


@router.post("", status_code=201, response_model=ModelOut)
def create_model(body: ModelCreate, platform: PlatformDep, caller: CallerDep) -> ModelOut:
    row = platform.registry.create_model(caller, body.name, body.task, body.description)
    return _model_out(platform, [row])[0]


@router.get("", response_model=Page[ModelOut])
def list_models(
    platform: PlatformDep, caller: CallerDep, limit: Limit = 100, offset: Offset = 0
) -> Page[ModelOut]:
    rows, total = platform.registry.list_models(caller, limit, offset)
    return Page[ModelOut](items=_model_out(platform, list(rows)), total=total)


@router.get("/{name}", response_model=ModelOut)
def get_model(name: str, platform: PlatformDep, caller: CallerDep) -> ModelOut:
    return _model_out(platform, [platform.registry.get_model(caller, name)])[0]


@router.patch("/{name}", response_model=ModelOut)
def update_model(
    name: str, body: ModelUpdate, platform: PlatformDep, caller: CallerDep
) -> ModelOut:
    row = platform.registry.update_model(caller, name, body.task, body.description)
    return _model_out(platform, [row])[0]


@router.delete("/{name}", status_code=204, response_class=Response)
def delete_model(name: str, platform: PlatformDep, caller: CallerDep) -> Response:
    platform.registry.delete_model(caller, name)
    return Response(status_code=204)


@router.post(
    "/{name}/versions",
    status_code=201,
    response_model=VersionOut,
    openapi_extra=ARTIFACT_DOC,
    summary="Upload a new version's artifact (registering the model on its first push)",
    description="A deployment that follows the model's `latest` version swaps to the new "
    "one; a version that would change the tensors such a deployment serves is refused (409) "
    "unless `force=true`.",
)
async def push_version(
    name: str,
    request: Request,
    platform: PlatformDep,
    caller: CallerDep,
    format: Annotated[
        str | None,
        Query(description="safetensors, torchscript, torch_export, onnx or keras."),
    ] = None,
    filename: str | None = None,
    spec: Annotated[str | None, Query(description="Catalog spec (JSON).")] = None,
    metrics: Annotated[str | None, Query(description="Metrics (JSON object).")] = None,
    params: Annotated[str | None, Query(description="Parameters (JSON object).")] = None,
    signature: Annotated[
        str | None,
        Query(
            description="The tensors, for a format that records none (TorchScript): JSON "
            '{"inputs": [{"name", "datatype", "shape"}], "outputs": [...]}, -1 for a '
            "dimension that varies."
        ),
    ] = None,
    description: str = "",
    parent: Annotated[
        int | None, Query(ge=1, le=MAX_VERSION, description="Parent version.")
    ] = None,
    force: Annotated[
        bool, Query(description="Register it even if deployments following `latest` break.")
    ] = False,
) -> VersionOut:
    caller.require(Scope.WRITE)
    meta = VersionMeta(
        format=format,
        spec=_json_param(spec, "spec"),
        metrics=_json_param(metrics, "metrics") or {},
        params=_json_param(params, "params") or {},
        description=description,
        parent_version=parent,
        signature=_json_param(signature, "signature"),
    )
    # Check the caller may push here (or register the name) before reading a large body.
    await run_in_threadpool(platform.registry.check_push, caller, name, create=True)
    staged = await stage_request(request, platform, ("file",), filename)

    def check(candidate: Candidate) -> None:
        if not force:
            platform.serving.refuse_breaking_move(
                name, "latest", Interface.of_version(candidate), f"a new version of '{name}'"
            )

    row = await run_in_threadpool(
        platform.registry.push_version, caller, name, staged["file"], meta, create=True, check=check
    )
    await platform.deployment_facade.follow(caller, name, "latest", row.version, forced=force)
    return VersionOut.of(row, name)


@router.get("/{name}/versions", response_model=Page[VersionOut])
def list_versions(
    name: str, platform: PlatformDep, caller: CallerDep, limit: Limit = 100, offset: Offset = 0
) -> Page[VersionOut]:
    rows, total = platform.registry.list_versions(caller, name, limit, offset)
    return Page[VersionOut](items=[VersionOut.of(r, name) for r in rows], total=total)


@router.get(
    "/{name}/versions/{ref}", response_model=VersionOut, summary="A version by number or alias"
)
def get_version(name: str, ref: str, platform: PlatformDep, caller: CallerDep) -> VersionOut:
    return VersionOut.of(platform.registry.get_version(caller, name, ref), name)


@router.get("/{name}/versions/{ref}/download", response_class=StreamingResponse)
def download_version(
    name: str, ref: str, platform: PlatformDep, caller: CallerDep
) -> StreamingResponse:
    version, chunks = platform.registry.open_artifact(caller, name, ref)
    suffix = FILE_SUFFIX.get(version.format, ".bin")
    headers = {
        "Content-Length": str(version.size),
        "Content-Disposition": f'attachment; filename="{name}-v{version.version}{suffix}"',
        "X-Modelyard-Sha256": version.sha256,
    }
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


@router.get(
    "/{name}/versions/{ref}/compare/{other}",
    response_model=dict[str, Any],
    summary="Two versions side by side: size, parameters, non-zeros, latency, metric",
)
def compare_versions(
    name: str, ref: str, other: str, platform: PlatformDep, caller: CallerDep
) -> dict[str, Any]:
    return platform.registry.compare_versions(caller, name, ref, other)


@router.delete("/{name}/versions/{ref}", status_code=204, response_class=Response)
def delete_version(name: str, ref: str, platform: PlatformDep, caller: CallerDep) -> Response:
    platform.registry.delete_version(caller, name, ref)
    return Response(status_code=204)


@router.get("/{name}/aliases", response_model=dict[str, int])
def list_aliases(name: str, platform: PlatformDep, caller: CallerDep) -> dict[str, int]:
    return platform.registry.aliases(caller, name)


@router.put(
    "/{name}/aliases/{alias}",
    response_model=AliasOut,
    summary="Point an alias",
    description="Deployments that follow the alias swap to the version before this answers. "
    "A move that would change the tensors such a deployment serves is refused (409) unless "
    '`"force": true`.',
)
async def set_alias(
    name: str, alias: str, body: AliasSet, platform: PlatformDep, caller: CallerDep
) -> AliasOut:
    target = await run_in_threadpool(
        platform.registry.get_version, caller, name, str(body.version), Permission.WRITE
    )
    if not body.force:
        await run_in_threadpool(
            platform.serving.refuse_breaking_move,
            name,
            alias,
            Interface.of_version(target),
            f"moving '{alias}' of '{name}' to version {body.version}",
        )
    row = await run_in_threadpool(platform.registry.set_alias, caller, name, alias, body.version)
    await platform.deployment_facade.follow(caller, name, alias, body.version, forced=body.force)
    return AliasOut(alias=row.alias, version=row.version)


@router.delete("/{name}/aliases/{alias}", status_code=204, response_class=Response)
def delete_alias(name: str, alias: str, platform: PlatformDep, caller: CallerDep) -> Response:
    platform.registry.delete_alias(caller, name, alias)
    return Response(status_code=204)


@router.get("/{name}/acl", response_model=AclBody)
def get_model_acl(name: str, platform: PlatformDep, caller: CallerDep) -> AclBody:
    return AclBody.model_validate(platform.registry.acl.get(caller, name))


@router.put("/{name}/acl", response_model=AclBody)
def set_model_acl(name: str, body: AclBody, platform: PlatformDep, caller: CallerDep) -> AclBody:
    grants = body.entries()
    return AclBody.model_validate(platform.registry.acl.set(caller, name, body.public, grants))
