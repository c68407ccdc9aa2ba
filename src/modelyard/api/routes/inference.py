"""The KServe / Triton Open Inference Protocol v2 (REST, JSON and binary tensors).

``{m}`` is a deployment's name and ``{v}`` one of the model versions it serves, so existing
clients such as ``tritonclient.http`` work unchanged. The health probes are open; every other
route needs a key (``infer`` scope for inference). The two inference routes are lean
(:mod:`modelyard.api.lean`): the hot path of every request.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from modelyard import __version__
from modelyard.api.deps import CallerDep, PlatformDep, authorize_inference
from modelyard.api.lean import lean_post
from modelyard.auth.access import Caller
from modelyard.errors import InvalidInput, ModelyardError, NotFound
from modelyard.platform import Platform
from modelyard.serving import oip
from modelyard.serving.manager import Live
from modelyard.usage.meter import rows_of

router = APIRouter(prefix="/v2", tags=["inference (Open Inference Protocol v2)"])
health_router = APIRouter(prefix="/v2/health", tags=["health"])

EXTENSIONS = ["binary_tensor_data", "statistics"]


@health_router.get("/live", summary="The server is alive")
def live() -> dict[str, bool]:
    return {"live": True}


@health_router.get("/ready", summary="The server is ready to serve")
def ready() -> dict[str, bool]:
    return {"ready": True}


@router.get("", summary="Server metadata")
def server_metadata(caller: CallerDep) -> dict[str, Any]:
    return oip.server_metadata("modelyard", __version__, EXTENSIONS)


async def _live(platform: Platform, caller: Caller, name: str) -> Live:
    await authorize_inference(platform, caller, name)
    return platform.serving.get(name)


@router.get("/models/{model}", summary="Model metadata")
async def model_metadata(model: str, platform: PlatformDep, caller: CallerDep) -> dict[str, Any]:
    return platform.deployment_facade.metadata(await _live(platform, caller, model), None)


@router.get("/models/{model}/versions/{version}", summary="Model version metadata")
async def version_metadata(
    model: str, version: str, platform: PlatformDep, caller: CallerDep
) -> dict[str, Any]:
    live = await _live(platform, caller, model)
    return platform.deployment_facade.metadata(live, version)


async def _ready(platform: Platform, caller: Caller, model: str, version: str | None) -> Response:
    live = await _live(platform, caller, model)
    if version is not None and not any(str(s.number) == version for s, _ in live.routes):
        raise NotFound(f"deployment '{model}' does not serve version '{version}'")
    ok = live.status == "ready"
    return JSONResponse({"name": model, "ready": ok}, status_code=200 if ok else 503)


NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "The model is not ready (yet): it is still loading.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
                    "required": ["name", "ready"],
                }
            }
        },
    }
}


@router.get("/models/{model}/ready", summary="Whether the model is ready", responses=NOT_READY)
async def model_ready(model: str, platform: PlatformDep, caller: CallerDep) -> Response:
    return await _ready(platform, caller, model, None)


@router.get(
    "/models/{model}/versions/{version}/ready",
    summary="Whether the version is ready",
    responses=NOT_READY,
)
async def version_ready(
    model: str, version: str, platform: PlatformDep, caller: CallerDep
) -> Response:
    return await _ready(platform, caller, model, version)


async def _infer(
    request: Request, platform: Platform, caller: Caller, model: str, version: str | None
) -> Response:
    await authorize_inference(platform, caller, model)
    live_ = await platform.deployment_facade.loaded(model)
    body = await request.body()  # capped by the gate at MODELYARD_MAX_INFER_BYTES
    header = request.headers.get("inference-header-content-length")
    if header is not None and not (header.isascii() and header.isdigit()):
        raise InvalidInput("Inference-Header-Content-Length must be a non-negative integer")
    decoded = oip.decode_request(body, int(header) if header is not None else None)
    inputs = {item.name: item.array for item in decoded.inputs}
    if len(inputs) != len(decoded.inputs):
        raise InvalidInput("inputs: each input name may appear once")
    deadline = time.monotonic() + live_.spec.timeout_ms / 1000
    ticket = await platform.usage.admit(caller, model, "inference")
    try:
        result = await platform.deployment_facade.infer(
            model, inputs, version=version, deadline=deadline
        )
    except ModelyardError as exc:
        ticket.failed(exc.status)
        raise
    ticket.done(version=result.version, model=live_.spec.model, rows=rows_of(inputs))
    payload, headers = oip.encode_response(
        model_name=model,
        model_version=str(result.version) if result.version is not None else None,
        request_id=decoded.id,
        outputs=result.outputs,
        requested=decoded.outputs,
        binary_default=decoded.binary_default,
    )
    media = headers.pop("Content-Type", headers.pop("content-type", "application/json"))
    if ticket.headers:
        headers.update(ticket.headers)
    return Response(payload, media_type=media, headers=headers)


@lean_post(router, "/models/{model}/infer", summary="Inference (JSON or binary tensors)")
async def infer(model: str, request: Request, platform: PlatformDep, caller: CallerDep) -> Response:
    return await _infer(request, platform, caller, model, None)


@lean_post(router, "/models/{model}/versions/{version}/infer", summary="Inference on one version")
async def infer_version(
    model: str, version: str, request: Request, platform: PlatformDep, caller: CallerDep
) -> Response:
    return await _infer(request, platform, caller, model, version)


@router.get("/models/{model}/stats", summary="Statistics like Triton's")
async def stats(model: str, platform: PlatformDep, caller: CallerDep) -> dict[str, Any]:
    return await _stats(platform, caller, model, None)


@router.get("/models/{model}/versions/{version}/stats", summary="One version's statistics")
async def stats_version(
    model: str, version: str, platform: PlatformDep, caller: CallerDep
) -> dict[str, Any]:
    return await _stats(platform, caller, model, version)


async def _stats(
    platform: Platform, caller: Caller, model: str, version: str | None
) -> dict[str, Any]:
    live_ = await _live(platform, caller, model)
    entries = []
    for served, _ in live_.routes:
        if version is not None and str(served.number) != version:
            continue
        s = platform.serving.metrics.version_stats(model, str(served.number))
        entries.append(
            {
                "name": model,
                "version": str(served.number),
                "last_inference": s.last_inference_ms,
                "inference_count": s.batch_rows,
                "execution_count": s.batches,
                "inference_stats": {
                    "success": {"count": s.success, "ns": s.success_ns},
                    "fail": {"count": s.failure, "ns": 0},
                    "queue": {"count": s.batches, "ns": s.queue_ns},
                    "compute_infer": {"count": s.batches, "ns": s.compute_ns},
                },
                "rejected": s.rejected,
                "expired": s.expired,
            }
        )
    if version is not None and not entries:
        raise NotFound(f"deployment '{model}' does not serve version '{version}'")
    if not entries and live_.spec.pipeline is None:
        raise NotFound(f"deployment '{model}' serves no version yet")
    return {"model_stats": entries}
