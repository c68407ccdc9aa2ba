"""From an OpenAI model id to the deployment that serves it."""

from __future__ import annotations

from typing import Any

from modelyard.api.deps import authorize_inference
from modelyard.auth.access import Caller
from modelyard.errors import InvalidInput, NotFound
from modelyard.platform import Platform
from modelyard.serving.manager import Served

FINE_TUNED_PREFIX = "ft:"


def deployment_name(model_id: str) -> str:
    """Model ids are deployment names; ``ft:base:suffix:id`` is served as ``ft-base-suffix-id``."""
    if model_id.startswith(FINE_TUNED_PREFIX):
        return model_id.replace(":", "-")
    return model_id


def model_id_of(name: str, served: Served | None) -> str:
    """The id /v1/models shows for a deployment."""
    if served is not None:
        wanted = (served.version.params or {}).get("openai_model_id")
        if isinstance(wanted, str) and deployment_name(wanted) == name:
            return wanted
    return name


def unknown_model(model_id: str) -> NotFound:
    return NotFound(
        f"The model '{model_id}' does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


async def served_model(platform: Platform, caller: Caller, model_id: str) -> Served:
    """The loaded version behind ``model_id`` (loading it now if it is not yet)."""
    name = deployment_name(model_id)
    try:
        await authorize_inference(platform, caller, name)
    except NotFound as exc:
        raise unknown_model(model_id) from exc
    live = platform.serving.status(name)
    if live is None or not live.routes:
        live = await platform.serving.sync(name)
    if live is None:
        raise unknown_model(model_id)
    if live.spec.pipeline is not None:
        raise InvalidInput(
            f"'{model_id}' is a pipeline deployment; it has no OpenAI endpoints", param="model"
        )
    return live.pick(None)


def model_of(platform: Platform, name: str) -> str | None:
    """The registered model a deployment serves, as usage records name it."""
    live = platform.serving.status(name)
    return live.spec.model if live is not None else None


def runtime_of(served: Served, model_id: str, kind: str, endpoint: str) -> Any:
    """The served runtime if it is of ``kind``; a 400 naming the endpoint otherwise."""
    runtime = served.runtime
    if getattr(runtime, "kind", None) != kind:
        what = "a language model" if kind == "causal_lm" else "an embedding model"
        raise InvalidInput(
            f"'{model_id}' is not {what}, so it cannot be used with {endpoint}",
            param="model",
            code="model_not_supported",
        )
    return runtime


def wait_budget(platform: Platform, model_id: str) -> float:
    """Seconds a request may wait for a free slot: the deployment's ``timeout_ms``."""
    live = platform.serving.status(deployment_name(model_id))
    return (live.spec.timeout_ms if live is not None else 30_000.0) / 1000
