"""Turning an HTTP request body into staged files: raw streamed bodies or multipart parts."""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from modelyard.api.gate import CALLER_KEY
from modelyard.errors import InvalidInput
from modelyard.platform import Platform
from modelyard.storage.staging import StagedFile, stage_fileobj, stage_stream


async def stage_request(
    request: Request, platform: Platform, parts: tuple[str, ...], filename: str | None
) -> dict[str, StagedFile]:
    """Stage the request body.

    A raw body (any content type but multipart) becomes the part ``parts[0]``; a multipart
    body may carry any of ``parts`` as file fields. The size limit is enforced on the bytes
    as they arrive (the gate refuses a declared length over it before the body is read).
    """
    settings = platform.settings
    limit = settings.max_upload_bytes
    caller = request.scope.get(CALLER_KEY)
    if caller is not None and platform.usage.storage_limits(caller):
        # A stored-bytes quota refuses the upload before a byte of it is written.
        declared = request.headers.get("content-length", "")
        incoming = int(declared) if declared.isdigit() else 0
        await run_in_threadpool(platform.usage.check_storage, caller, incoming)
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        staged = await stage_stream(request.stream(), settings.tmp_dir, limit, filename)
        return {parts[0]: staged}
    if "content-length" not in request.headers:
        raise InvalidInput("a multipart upload needs a Content-Length header")
    form = await request.form(max_files=len(parts), max_fields=16)
    out: dict[str, StagedFile] = {}
    try:
        for part in parts:
            item = form.get(part)
            if isinstance(item, UploadFile):
                out[part] = stage_part(item, platform)
        unknown = [k for k, v in form.multi_items() if isinstance(v, UploadFile) and k not in parts]
        if unknown:
            raise InvalidInput(f"unexpected file fields {unknown}; expected {list(parts)}")
        if not out:
            raise InvalidInput(f"the multipart body has none of the file fields {list(parts)}")
        return out
    except BaseException:
        for staged in out.values():
            staged.discard()
        raise
    finally:
        await form.close()


def stage_part(item: UploadFile, platform: Platform) -> StagedFile:
    """A multipart file field staged (hashed, size-checked) like any upload; keeps its name."""
    settings = platform.settings
    return stage_fileobj(item.file, settings.tmp_dir, settings.max_upload_bytes, item.filename)
