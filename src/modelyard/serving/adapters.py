"""Deployments of LoRA adapter versions, served on the deployment of their base model.

A deployment whose version is of format ``lora`` names, in ``base``, the deployment that
serves the base model version the adapter was trained on (the adapter version's parent in
its lineage). The adapter is read (megabytes, not the base's weights) and attached to that
deployment's loaded language model: its requests run in the base's engine, in the same
decoding steps as the base's own requests and those of its other adapters. Nothing of the
base is loaded again.

Example spec::

    {"name": "ft-tiny-mars", "model": "ft-tiny-mars", "version": "latest", "base": "tiny"}
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelyard.db.tables import ModelVersion
from modelyard.errors import Conflict, InvalidInput
from modelyard.llm.adapted import AdaptedLanguageModel
from modelyard.llm.language_model import LanguageModel
from modelyard.registry.formats.lora import LORA_FORMAT, unpack_lora
from modelyard.serving.llm_metrics import LlmCollectors
from modelyard.serving.spec import DeploymentSpec

Lookup = Callable[[str], Any]
"""A deployment's live state by name (``DeploymentManager.status``), or None."""


def base_ref(spec: DeploymentSpec, version: ModelVersion) -> tuple[str, int]:
    """(model, version) of the base an adapter version was trained on, from its lineage."""
    if version.parent_version is None:
        raise InvalidInput(
            f"version {version.version} of '{spec.model}' is a LoRA adapter without a base "
            "model in its lineage (parent_version); push it with its parent to serve it",
            field="model",
        )
    return version.parent_model or str(spec.model), version.parent_version


def base_model_of(lookup: Lookup, spec: DeploymentSpec, version: ModelVersion) -> LanguageModel:
    """The language model the adapter runs on: the one deployment ``spec.base`` serves, if it
    is the adapter's base version; InvalidInput (422) naming the mismatch otherwise."""
    model, number = base_ref(spec, version)
    wanted = f"version {number} of '{model}'"
    if spec.base is None:
        raise InvalidInput(
            f"base: version {version.version} of '{spec.model}' is a LoRA adapter of {wanted}; "
            "name the deployment serving that version in 'base'",
            field="base",
        )
    live = lookup(spec.base)
    if live is None or not live.routes:
        raise InvalidInput(
            f"base: no deployment named '{spec.base}' is serving here; deploy {wanted} first",
            field="base",
        )
    served = [s for s, _ in live.routes]
    runtime = served[0].runtime
    if not isinstance(runtime, LanguageModel) or isinstance(runtime, AdaptedLanguageModel):
        raise InvalidInput(
            f"base: deployment '{spec.base}' does not serve a base language model", field="base"
        )
    if len(served) > 1 or live.spec.model != model or served[0].number != number:
        shown = ", ".join(str(s.number) for s in served)
        raise InvalidInput(
            f"base: deployment '{spec.base}' serves version {shown} of '{live.spec.model}', but "
            f"this adapter was trained on {wanted}",
            field="base",
        )
    return runtime


def load_adapter(
    lookup: Lookup,
    name: str,
    spec: DeploymentSpec,
    version: ModelVersion,
    archive: Path,
    work: Path,
    max_bytes: int,
    metrics: LlmCollectors | None = None,
) -> AdaptedLanguageModel:
    """Attach the adapter in ``archive`` to its base deployment's model (blocking); the
    first adapter of a base also starts its LoRA metrics."""
    base = base_model_of(lookup, spec, version)
    folder = unpack_lora(archive, work / "adapter", max_bytes=max_bytes)

    def current_base() -> LanguageModel:
        try:
            return base_model_of(lookup, spec, version)
        except InvalidInput as exc:
            raise Conflict(f"deployment '{name}': {exc.detail}") from None

    adapted = AdaptedLanguageModel(base, folder, name, current_base)
    bank = base.engine.adapters
    if metrics is not None and bank is not None and bank.on_decode_step is None:
        number = lookup(str(spec.base)).routes[0][0].number
        bank.on_decode_step = metrics.lora(str(spec.base), str(number), lambda: len(bank))
    return adapted


__all__ = ["LORA_FORMAT", "base_model_of", "base_ref", "load_adapter"]
