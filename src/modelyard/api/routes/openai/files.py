"""/v1/files: fine-tuning data, stored as data sets of the native API.

An uploaded file is validated example by example (the error names the line), then kept as a
JSONL data set named by its id (``file-…``), so it has an owner, an ACL and a place in
``/api/v1/datasets`` like any other data.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile

from modelyard.api.deps import CallerDep, PlatformDep
from modelyard.api.uploads import stage_part
from modelyard.auth.access import Caller
from modelyard.db.tables import Dataset
from modelyard.errors import InvalidInput, NotFound, PayloadTooLarge
from modelyard.llm.data import iter_examples
from modelyard.platform import Platform
from modelyard.storage.staging import StagedFile

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])
FILE_PREFIX = "file-"
PURPOSES = ("fine-tune",)
MARKER = "openai-file purpose="
PAGE = 500


def file_object(row: Dataset) -> dict[str, Any]:
    original = row.originals.get("file", {})
    return {
        "id": row.name,
        "object": "file",
        "bytes": row.size,
        "created_at": int(row.created_at.timestamp()),
        "filename": original.get("filename", row.name),
        "purpose": row.description.removeprefix(MARKER),
        "status": "processed",
        "status_details": None,
        "expires_at": None,
    }


def is_file(row: Dataset) -> bool:
    return row.name.startswith(FILE_PREFIX) and row.description.startswith(MARKER)


def get_file(platform: Platform, caller: Caller, file_id: str, param: str = "file_id") -> Dataset:
    """The caller's file ``file_id``; a 404 naming ``param`` otherwise."""
    try:
        row = platform.datasets.get(caller, file_id)
    except NotFound:
        row = None
    if row is None or not is_file(row):
        raise NotFound(f"No such File object: {file_id}", param=param, code="file_not_found")
    return row


def _lines(path: Path, limit: int) -> Iterator[bytes]:
    """The file's lines, each read with a bound so that one huge line is never held."""
    with path.open("rb") as f:
        for number in itertools.count(1):
            line = f.readline(limit + 1)
            if not line:
                return
            if len(line) > limit and not line.endswith(b"\n"):
                raise PayloadTooLarge(
                    f"line {number} is longer than {limit} bytes (MODELYARD_MAX_DATASET_LINE_BYTES)"
                )
            yield line


def _store(platform: Platform, caller: Caller, staged: StagedFile, purpose: str) -> Dataset:
    try:
        limit = platform.settings.max_dataset_line_bytes
        for _example in iter_examples(_lines(staged.path, limit)):
            pass  # checked one line at a time; none is kept
    except BaseException:
        staged.discard()
        raise
    return platform.datasets.create(
        caller,
        name=f"{FILE_PREFIX}{uuid.uuid4().hex[:24]}",
        uploads=[staged],
        fmt="jsonl",
        description=f"{MARKER}{purpose}",
    )


@router.post("/files", summary="Upload a file (OpenAI-compatible)")
async def upload_file(request: Request, platform: PlatformDep, caller: CallerDep) -> Any:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidInput("send multipart/form-data with 'file' and 'purpose'", param="file")
    form = await request.form(max_files=1, max_fields=8)
    try:
        purpose = form.get("purpose")
        item = form.get("file")
        if not isinstance(purpose, str) or purpose not in PURPOSES:
            raise InvalidInput(
                f"purpose: must be one of {', '.join(PURPOSES)}, got {purpose!r}",
                param="purpose",
            )
        if not isinstance(item, UploadFile):
            raise InvalidInput("file: the multipart body has no file field", param="file")
        staged = await asyncio.to_thread(stage_part, item, platform)
    finally:
        await form.close()
    try:
        row = await asyncio.to_thread(_store, platform, caller, staged, purpose)
    except InvalidInput as exc:
        raise InvalidInput(
            f"Invalid file format: {exc.detail}", param="file", code="invalid_file_format"
        ) from exc
    return file_object(row)


@router.get("/files", summary="List files (OpenAI-compatible)")
def list_files(
    platform: PlatformDep, caller: CallerDep, purpose: str | None = None
) -> dict[str, Any]:
    data: list[dict[str, Any]] = []
    offset = 0
    while True:
        rows, total = platform.datasets.list_datasets(caller, PAGE, offset)
        for row in rows:
            if is_file(row) and row.owner_id == caller.principal_id:
                entry = file_object(row)
                if purpose is None or entry["purpose"] == purpose:
                    data.append(entry)
        offset += len(rows)
        if not rows or offset >= total:
            break
    data.sort(key=lambda e: e["created_at"], reverse=True)
    return {"object": "list", "data": data, "has_more": False}


@router.get("/files/{file_id}", summary="Retrieve a file (OpenAI-compatible)")
def retrieve_file(file_id: str, platform: PlatformDep, caller: CallerDep) -> dict[str, Any]:
    return file_object(get_file(platform, caller, file_id))


@router.get("/files/{file_id}/content", summary="Retrieve a file's content (OpenAI-compatible)")
def file_content(file_id: str, platform: PlatformDep, caller: CallerDep) -> Response:
    get_file(platform, caller, file_id)
    _row, chunks, _name = platform.datasets.download(caller, file_id)
    return StreamingResponse(chunks, media_type="application/octet-stream")


@router.delete("/files/{file_id}", summary="Delete a file (OpenAI-compatible)")
def delete_file(file_id: str, platform: PlatformDep, caller: CallerDep) -> dict[str, Any]:
    get_file(platform, caller, file_id)
    platform.datasets.delete(caller, file_id)
    return {"id": file_id, "object": "file", "deleted": True}
