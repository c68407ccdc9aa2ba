"""Data sets: streamed upload, list, show, download, delete, access control."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from modelyard.api.deps import CallerDep, Limit, Offset, PlatformDep
from modelyard.api.schemas.common import AclBody, Page
from modelyard.api.schemas.datasets import DatasetOut
from modelyard.api.schemas.privacy import PrivacyBudgetIn, PrivacyBudgetOut
from modelyard.api.uploads import stage_request
from modelyard.auth.access import Scope
from modelyard.datasets.privacy_budget import PrivacyBudgets

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"])

UPLOAD_DOC = {
    "requestBody": {
        "description": (
            "The file, streamed as the raw body (application/octet-stream), or multipart with "
            "a part `file` (or `images` and `labels` for an IDX pair)."
        ),
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        p: {"type": "string", "format": "binary"}
                        for p in ("file", "images", "labels")
                    },
                }
            },
        },
    }
}


@router.post(
    "",
    status_code=201,
    response_model=DatasetOut,
    openapi_extra=UPLOAD_DOC,
    summary="Upload a data set (CSV, NPZ, Parquet, JSONL or IDX)",
)
async def create_dataset(
    request: Request,
    platform: PlatformDep,
    caller: CallerDep,
    name: Annotated[str, Query(description="Unique name of the data set.")],
    format: Annotated[str | None, Query(description="csv, npz, parquet, jsonl or idx.")] = None,
    label: Annotated[str | None, Query(description="Label column or array.")] = None,
    description: str = "",
    filename: Annotated[str | None, Query(description="Original file name.")] = None,
) -> DatasetOut:
    caller.require(Scope.WRITE)
    staged = await stage_request(request, platform, ("file", "images", "labels"), filename)
    if "file" in staged:
        uploads = [staged.pop("file")]
    else:
        uploads = [staged.pop(p) for p in ("images", "labels") if p in staged]
    for leftover in staged.values():
        leftover.discard()
    row = await run_in_threadpool(
        platform.datasets.create,
        caller,
        name=name,
        uploads=uploads,
        fmt=format,
        label=label,
        description=description,
    )
    return DatasetOut.of(row)


@router.get("", response_model=Page[DatasetOut])
def list_datasets(
    platform: PlatformDep, caller: CallerDep, limit: Limit = 100, offset: Offset = 0
) -> Page[DatasetOut]:
    rows, total = platform.datasets.list_datasets(caller, limit, offset)
    return Page[DatasetOut](items=[DatasetOut.of(r) for r in rows], total=total)


@router.get("/{name}", response_model=DatasetOut)
def get_dataset(name: str, platform: PlatformDep, caller: CallerDep) -> DatasetOut:
    return DatasetOut.of(platform.datasets.get(caller, name))


@router.delete("/{name}", status_code=204, response_class=Response)
def delete_dataset(name: str, platform: PlatformDep, caller: CallerDep) -> Response:
    platform.datasets.delete(caller, name)
    return Response(status_code=204)


@router.get(
    "/{name}/download",
    response_class=StreamingResponse,
    summary="The original bytes (a tar of both files for an IDX pair)",
)
def download_dataset(name: str, platform: PlatformDep, caller: CallerDep) -> StreamingResponse:
    row, chunks, filename = platform.datasets.download(caller, name)
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if "file" in row.originals:
        headers["Content-Length"] = str(row.originals["file"]["size"])
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


@router.get("/{name}/acl", response_model=AclBody)
def get_dataset_acl(name: str, platform: PlatformDep, caller: CallerDep) -> AclBody:
    return AclBody.model_validate(platform.datasets.acl.get(caller, name))


@router.put("/{name}/acl", response_model=AclBody)
def set_dataset_acl(name: str, body: AclBody, platform: PlatformDep, caller: CallerDep) -> AclBody:
    grants = body.entries()
    return AclBody.model_validate(platform.datasets.acl.set(caller, name, body.public, grants))


@router.get(
    "/{name}/privacy-budget",
    response_model=PrivacyBudgetOut,
    summary="The data set's privacy budget: what is spent and left (and, for its owner, "
    "the ledger of private jobs)",
)
def get_privacy_budget(name: str, platform: PlatformDep, caller: CallerDep) -> PrivacyBudgetOut:
    view = PrivacyBudgets(platform.db, platform.datasets).get(caller, name)
    return PrivacyBudgetOut.model_validate(view)


@router.put(
    "/{name}/privacy-budget",
    response_model=PrivacyBudgetOut,
    summary="Set the total (ε, δ) private jobs may spend on the data set (owner or admin)",
)
def set_privacy_budget(
    name: str, body: PrivacyBudgetIn, platform: PlatformDep, caller: CallerDep
) -> PrivacyBudgetOut:
    view = PrivacyBudgets(platform.db, platform.datasets).set(
        caller,
        name,
        epsilon=body.epsilon,
        delta=body.delta,
        allow_non_private=body.allow_non_private,
    )
    return PrivacyBudgetOut.model_validate(view)
