"""Deployments end to end: their records and the models this server loaded for them, in step.

:class:`DeploymentFacade` is what the interfaces (the API, gRPC, the dashboard) call to
create, change, delete and call deployments. It joins the two halves of a deployment —
its row (:class:`~modelyard.serving.service.DeploymentService`) and what is loaded for it
(:class:`~modelyard.serving.manager.DeploymentManager`) — so that neither moves without
the other:

- a new or changed deployment is loaded and warmed up first, and its row is stored only
  once it serves (a change that does not load leaves row and models as they were);
- a deleted deployment's row goes first, then its models stop serving.

Example::

    row, live = await facade.create(caller, "digits", {"model": "digits-mlp"})
    result = await facade.infer("digits", {"input": rows})
    await facade.delete(caller, "digits")
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelyard.auth.access import Caller
from modelyard.db.tables import Deployment
from modelyard.errors import NotFound
from modelyard.runtimes.tensors import TensorSpec
from modelyard.serving import oip
from modelyard.serving.manager import DeploymentManager, InferResult, Live
from modelyard.serving.service import DeploymentService


class DeploymentFacade:
    """Create, change, delete and call deployments, keeping rows and loaded models in step."""

    def __init__(self, records: DeploymentService, manager: DeploymentManager) -> None:
        self.records = records
        """The deployments' rows and access rules."""
        self.manager = manager
        """What this server loaded for each deployment."""

    async def create(
        self, caller: Caller, name: str, raw: dict[str, Any], *, force: bool = False
    ) -> tuple[Deployment, Live]:
        """Check, load and warm up deployment ``name`` from spec ``raw``, then store it.

        Raises Conflict (409) if the name is taken or a traffic split's versions take or
        return other tensors (unless ``force``), InvalidInput (422) if the spec is wrong or
        does not load, NotFound/Forbidden if the caller may not read what it deploys. Nothing
        is stored then.
        """
        spec = await asyncio.to_thread(self.records.prepare_create, caller, name, raw)
        return await self.manager.apply(
            name,
            spec,
            lambda final: self.records.store_create(caller, name, final),
            replacing=False,
            force=force,
        )

    async def update(
        self, caller: Caller, name: str, changes: dict[str, Any], *, force: bool = False
    ) -> tuple[Deployment, Live]:
        """Change some fields of ``name``'s spec; what it serves swaps before the row changes.

        A change that does not load (422), or a swap to other tensors without ``force``
        (409), leaves the row and what is served as they were.
        """
        row, spec = await asyncio.to_thread(self.records.prepare_update, caller, name, changes)
        return await self.manager.apply(
            name,
            spec,
            lambda final: self.records.store_update(caller, row, final, changes),
            replacing=True,
            force=force,
        )

    async def delete(self, caller: Caller, name: str) -> None:
        """Remove ``name``'s row, then stop serving it here (other processes follow)."""
        await asyncio.to_thread(self.records.delete, caller, name)
        await self.manager.sync(name)

    async def follow(
        self, caller: Caller, model: str, ref: str, version: int, *, forced: bool
    ) -> list[str]:
        """Swap the deployments of this server that follow ``ref`` of ``model`` now that it
        names ``version`` (the move was checked); a forced move is recorded on their rows, so
        that every server swaps too. Returns the deployments swapped."""
        names = await asyncio.to_thread(self.manager.followers, model, ref)
        if forced and names:
            await asyncio.to_thread(self.records.accept, caller, names, ref, version)
        for name in names:
            await self.manager.sync(name, force=True)
        return names

    def get(self, caller: Caller, name: str) -> tuple[Deployment, Live | None]:
        """``name``'s row, if the caller may read it, and what this server serves for it."""
        return self.records.get(caller, name), self.manager.status(name)

    def list(
        self, caller: Caller, limit: int, offset: int, search: str | None = None
    ) -> tuple[list[tuple[Deployment, Live | None]], int]:
        """A page of the deployments ``caller`` may read, each with what is served for it."""
        rows, total = self.records.list_deployments(caller, limit, offset, search)
        return [(row, self.manager.status(row.name)) for row in rows], total

    async def authorize(self, caller: Caller, name: str) -> None:
        """Raise unless ``caller`` may call ``name`` (``infer`` scope and read access);
        recent answers are remembered briefly."""
        if not self.records.may_infer_cached(caller, name):
            await asyncio.to_thread(self.records.check_infer, caller, name)

    async def loaded(self, name: str) -> Live:
        """``name`` as served here, loading it first if another process created it."""
        return await self.manager.loaded(name)

    async def infer(
        self,
        name: str,
        inputs: Mapping[str, np.ndarray],
        *,
        version: str | None = None,
        deadline: float | None = None,
    ) -> InferResult:
        """Run one request through ``name`` (batched with others), postprocessed as its spec
        says; the caller was authorized with :meth:`authorize`."""
        return await self.manager.infer(name, inputs, version=version, deadline=deadline)

    def metadata(self, live: Live, version: str | None) -> dict[str, Any]:
        """The Open Inference Protocol's model metadata of a deployment (HTTP and gRPC).

        For a pipeline, its first stage's inputs and its last stage's outputs; a pipeline has
        no versions (NotFound when one is asked for).
        """
        if live.spec.pipeline is not None:
            if version is not None:
                raise NotFound(f"deployment '{live.name}' is a pipeline; it has no versions")
            first = self.manager.get(live.spec.pipeline[0])
            last = self.manager.get(live.spec.pipeline[-1])
            inputs = _describe(first.pick(None).runtime.inputs) if first.routes else []
            outputs = _describe(last.pick(None).runtime.outputs) if last.routes else []
            body = oip.model_metadata(live.name, [], "modelyard_pipeline", inputs, outputs)
            body["parameters"] = {"pipeline": live.spec.pipeline}
            return body
        runtime = live.pick(version).runtime
        return oip.model_metadata(
            live.name,
            [str(served.number) for served, _ in live.routes],
            runtime.name,
            _describe(runtime.inputs),
            _describe(runtime.outputs),
        )


def _describe(specs: Sequence[TensorSpec]) -> list[dict[str, Any]]:
    return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape or [])} for t in specs]


__all__ = ["DeploymentFacade"]
