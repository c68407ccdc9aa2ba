"""GET /v1/models and /v1/models/{model}: the deployments serving language or embedding
models that the caller may call."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.convertors import PathConvertor, register_url_convertor

from modelyard.api.deps import CallerDep, PlatformDep
from modelyard.api.routes.openai.target import (
    deployment_name,
    model_id_of,
    served_model,
    unknown_model,
)
from modelyard.db.tables import Deployment
from modelyard.errors import ModelyardError
from modelyard.platform import Platform
from modelyard.registry.formats.lora import LORA_FORMAT
from modelyard.serving.manager import Served

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])
PAGE = 500


class ModelId(PathConvertor):
    """A model id, slashes included (``org/name``), that is not KServe's ``{name}:explain``:
    that path belongs to the explain route, and no other method may claim it."""

    regex = r".*(?<!:explain)"


register_url_convertor("model_id", ModelId())


def _entry(row: Deployment, served: Served | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": model_id_of(row.name, served),
        "object": "model",
        "created": int(row.created_at.timestamp()),
        "owned_by": row.owner.name,
    }
    if row.spec.get("base"):
        entry["parent"] = row.spec["base"]  # a LoRA adapter's base, as vLLM lists adapters
    if served is not None:
        spec = served.version.spec or {}
        entry["modelyard"] = {
            "deployment": row.name,
            "version": served.number,
            "kind": spec.get("kind"),
            "context_length": spec.get("context_length"),
        }
    return entry


def _served(platform: Platform, name: str) -> Served | None:
    live = platform.serving.status(name)
    if live is None or not live.routes:
        return None
    return live.routes[0][0]


def _is_hf(row: Deployment, served: Served | None) -> bool:
    if served is not None:
        return served.version.format in ("hf", LORA_FORMAT)
    return row.spec.get("pipeline") is None


@router.get("/models", summary="List models (OpenAI-compatible)")
async def list_models(platform: PlatformDep, caller: CallerDep) -> dict[str, Any]:
    data: list[dict[str, Any]] = []
    offset = 0
    while True:
        rows, total = platform.deployments.list_deployments(caller, PAGE, offset)
        for row in rows:
            served = _served(platform, row.name)
            if _is_hf(row, served):
                data.append(_entry(row, served))
        offset += len(rows)
        if not rows or offset >= total:
            break
    return {"object": "list", "data": data}


@router.get("/models/{model:model_id}", summary="Retrieve a model (OpenAI-compatible)")
async def retrieve_model(model: str, platform: PlatformDep, caller: CallerDep) -> dict[str, Any]:
    try:
        row = platform.deployments.get(caller, deployment_name(model))
    except ModelyardError as exc:
        if exc.status == 404:
            raise unknown_model(model) from exc
        raise
    served = await served_model(platform, caller, model)
    return _entry(row, served)
