"""What one worker of a job asks of the cluster: ``{"cpus": 2, "gpus": 1}``.

Given with any job (``"resources"`` next to ``"type"``) and stored in its spec. The Ray
executor places every worker of the job (each rank of a distributed one) on a node with
that much free; the local executor runs jobs in its own slots and reads only ``cpus`` as
the job's thread count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelyard.errors import InvalidInput


class JobResources(BaseModel):
    """CPUs and GPUs of one worker of a job; unset means the server's default."""

    model_config = ConfigDict(extra="forbid")

    cpus: float | None = Field(default=None, gt=0, le=1024, description="CPU cores per worker.")
    gpus: float | None = Field(default=None, ge=0, le=64, description="GPUs per worker.")


def parse_resources(raw: Any) -> JobResources:
    """A checked :class:`JobResources`; InvalidInput naming the field otherwise."""
    if raw is None:
        return JobResources()
    if not isinstance(raw, Mapping):
        raise InvalidInput("resources: give an object such as {'cpus': 2, 'gpus': 1}")
    try:
        return JobResources.model_validate(dict(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"resources.{field}: {first['msg']}" if field else "resources") from None


def stored_resources(spec: Mapping[str, Any]) -> JobResources:
    """The resources kept in a job's spec (checked when it was submitted)."""
    return JobResources.model_validate(spec.get("resources") or {})


def wants_gpu(spec: Mapping[str, Any]) -> bool:
    """Whether a job's training config asks for CUDA explicitly."""
    config = spec.get("config")
    device = config.get("device") if isinstance(config, Mapping) else None
    return isinstance(device, str) and device.startswith("cuda")
