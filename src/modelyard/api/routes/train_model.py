"""``POST /train_model``: train a model in one call, the way a first script would.

The fields (``model_name``, ``data``, ``optimizer``, ``learning_rate``, ``epochs`` and any
other field of the flat train form) may come as query parameters, form fields or a JSON
object. The reply is the job; with ``?wait=SECONDS`` or ``Prefer: wait=SECONDS``
(RFC 7240) it is the finished job, with its result and metrics, when it ends in time::

    requests.post(URL + "/train_model", headers={"Authorization": "Bearer my_..."},
                  params={"model_name": "mlp", "data": "digits", "optimizer": "Adam",
                          "learning_rate": 0.001, "epochs": 20, "wait": 60}).json()
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from modelyard.api.deps import CallerDep, PlatformDep
from modelyard.api.schemas.jobs import FLAT_EXAMPLE, JobOut
from modelyard.auth.access import Caller
from modelyard.errors import InvalidInput
from modelyard.jobs.state import TERMINAL
from modelyard.platform import Platform

router = APIRouter(tags=["jobs"])

MAX_WAIT_S = 600.0
POLL_S = 0.1
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*([0-9]+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?")

TRAIN_MODEL_DOC = {
    "parameters": [
        {
            "name": name,
            "in": "query",
            "required": False,
            "schema": schema,
            "description": description,
        }
        for name, schema, description in [
            ("model_name", {"type": "string"}, "mlp, cnn, rnn, transformer, or your model."),
            ("data", {"type": "string"}, "The data set to train on."),
            ("optimizer", {"type": "string"}, "gd, sgd, adam, adamw or rmsprop (any case)."),
            ("learning_rate", {"type": "number"}, "The learning rate."),
            ("epochs", {"type": "integer"}, "Passes over the data."),
            ("wait", {"type": "number"}, "Seconds to wait for the job to end (at most 600)."),
        ]
    ],
    "requestBody": {
        "required": False,
        "description": "The same fields as a JSON object or form fields, instead of the query.",
        "content": {
            "application/json": {
                "schema": {"type": "object", "additionalProperties": True},
                "example": FLAT_EXAMPLE,
            },
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "additionalProperties": True}
            },
        },
    },
}


def _scalar(value: str) -> Any:
    """A query or form value as the JSON value it spells (numbers, true/false, objects)."""
    text = value.strip()
    if _NUMBER.fullmatch(text) or text in ("true", "false", "null") or text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            return value
    return value


async def _fields(request: Request) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        raw = await request.body()
        if raw.strip():
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError) as exc:
                raise InvalidInput("the body is not a JSON object") from exc
            if not isinstance(body, dict):
                raise InvalidInput("the body must be a JSON object of the train fields")
            fields.update(body)
    elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form(max_files=0, max_fields=64)
        try:
            for key, value in form.multi_items():
                fields[key] = _scalar(str(value))
        finally:
            await form.close()
    for key, value in request.query_params.multi_items():
        if key in fields:
            raise InvalidInput(f"{key}: given twice (in the query and in the body)", field=key)
        fields[key] = _scalar(value)
    return fields


def requested_wait(request: Request, fields: dict[str, Any]) -> float:
    """Seconds to wait for the job: ``wait`` among the fields or ``Prefer: wait=N``."""
    value: Any = fields.pop("wait", None)
    if value is None:
        match = _PREFER_WAIT.search(request.headers.get("prefer", ""))
        value = int(match.group(1)) if match else 0
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidInput("wait: must be a number of seconds", field="wait")
    return min(float(value), MAX_WAIT_S)


async def wait_for_job(
    request: Request, platform: Platform, caller: Caller, job: JobOut, seconds: float
) -> JobOut:
    """The job once it has ended, or as it is when ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while job.status not in TERMINAL and time.monotonic() < deadline:
        if await request.is_disconnected():
            break
        await asyncio.sleep(POLL_S)
        job = JobOut.of(await run_in_threadpool(platform.jobs.get, caller, job.id))
    return job


@router.post(
    "/train_model",
    status_code=201,
    response_model=JobOut,
    openapi_extra=TRAIN_MODEL_DOC,
    summary="Train a model in one call (query, form or JSON fields)",
)
async def train_model(request: Request, platform: PlatformDep, caller: CallerDep) -> Response:
    fields = await _fields(request)
    wait = requested_wait(request, fields)
    fields.setdefault("type", "train")
    job = JobOut.of(await run_in_threadpool(platform.jobs.submit, caller, fields))
    headers = {"Location": f"/api/v1/jobs/{job.id}"}
    if wait > 0:
        job = await wait_for_job(request, platform, caller, job, wait)
        headers["Preference-Applied"] = f"wait={int(wait)}"
    return Response(
        job.model_dump_json(), status_code=201, media_type="application/json", headers=headers
    )
