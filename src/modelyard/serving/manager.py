"""The serving manager: turns deployment records into loaded, batched, routable models.

For each deployment it loads the versions it serves (one, or a weighted canary split),
warms each up before routing to it, and keeps following the version references: when an
alias moves or a deployment is changed, the new version is loaded and warmed first, then
requests switch to it, and the old one drains what it already accepted — a hot swap with no
failed requests. Pipelines chain other deployments.

A model is loaded from a private scratch folder in the server's working folder (the blob's
plaintext, an ONNX export, an unpacked archive), which is removed as soon as the model is in
memory and warmed up: with encryption at rest no decrypted copy stays on disk, and nothing
is left to clean up when a deployment goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.config import Settings
from modelyard.db.tables import Deployment, ModelVersion
from modelyard.errors import InvalidInput, ModelyardError, NotFound, Unavailable
from modelyard.registry.service import ModelRegistry
from modelyard.serving import heap
from modelyard.serving.batcher import BatchConfig, Batcher
from modelyard.serving.metrics import ServingMetrics
from modelyard.serving.service import DeploymentService
from modelyard.serving.spec import DeploymentSpec
from modelyard.storage.base import BlobStore
from modelyard.storage.staging import scratch_dir

log = logging.getLogger("modelyard.serving")

# How often deployments are compared with the registry (aliases may move at any time, also
# from another server process sharing the database).
RECONCILE_S = 2.0
# How long a swapped-out version keeps accepting requests that already picked it.
SWAP_GRACE_S = 1.0
SUFFIX = {
    "safetensors": ".safetensors",
    "torchscript": ".pt",
    "torch_export": ".pt2",
    "onnx": ".onnx",
    "keras": ".keras",
}


@dataclass
class Served:
    """One loaded version of one deployment."""

    version: ModelVersion
    runtime: Any
    batcher: Batcher | None
    """None for a language model: its engine batches on its own (``runtime.engine``)."""

    @property
    def number(self) -> int:
        return self.version.version


@dataclass
class Live:
    """A deployment as it is served right now."""

    name: str
    spec: DeploymentSpec
    status: str = "loading"
    error: str | None = None
    routes: list[tuple[Served, float]] = field(default_factory=list)
    refs: dict[str, int] = field(default_factory=dict)

    def pick(self, version: str | None) -> Served:
        if not self.routes:
            raise Unavailable(f"deployment '{self.name}' is {self.status}: {self.error or ''}")
        if version is not None:
            for served, _ in self.routes:
                if str(served.number) == version:
                    return served
            raise NotFound(f"deployment '{self.name}' does not serve version '{version}'")
        if len(self.routes) == 1:
            return self.routes[0][0]
        weights = [w for _, w in self.routes]
        return random.choices([s for s, _ in self.routes], weights)[0]


@dataclass
class InferResult:
    deployment: str
    version: int | None
    outputs: dict[str, np.ndarray]


class DeploymentManager:
    """Loads, serves and swaps every deployment of this server."""

    def __init__(
        self,
        settings: Settings,
        deployments: DeploymentService,
        registry: ModelRegistry,
        blobs: BlobStore,
        metrics: ServingMetrics,
    ) -> None:
        self._settings = settings
        self._deployments = deployments
        self._registry = registry
        self._blobs = blobs
        self.metrics = metrics
        self._live: dict[str, Live] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._task: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Serve every stored deployment (they survive restarts), then keep them in sync."""
        # Earlier releases kept plaintext copies of served models here, also of encrypted ones.
        await asyncio.to_thread(
            shutil.rmtree, self._settings.data_dir / "serving-cache", ignore_errors=True
        )
        rows = await asyncio.to_thread(self._deployments.all)
        for row in sorted(rows, key=lambda r: bool(r.spec.get("pipeline"))):
            await self.sync(row.name)
        self._task = asyncio.create_task(self._reconcile_forever(), name="serving-reconcile")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # Versions swapped out shortly before are still draining; let them finish.
        await asyncio.gather(*list(self._retiring), return_exceptions=True)
        for live in list(self._live.values()):
            await self._retire([s for s, _ in live.routes], grace=0)
        self._live.clear()

    def get(self, name: str) -> Live:
        live = self._live.get(name)
        if live is None:
            raise Unavailable(f"deployment '{name}' is not loaded on this server yet")
        return live

    def status(self, name: str) -> Live | None:
        return self._live.get(name)

    # -- keeping in sync with the records --------------------------------------------
    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_S)
            try:
                rows = {r.name: r for r in await asyncio.to_thread(self._deployments.all)}
                for name in set(self._live) - set(rows):
                    await self.sync(name)
                for name, row in rows.items():
                    live = self._live.get(name)
                    changed = live is None or live.spec.model_dump() != row.spec
                    if changed or (
                        live is not None and live.spec.model and await self._moved(live)
                    ):
                        await self.sync(name)
            except Exception:
                log.exception("serving reconcile failed")

    async def _moved(self, live: Live) -> bool:
        assert live.spec.model is not None
        for ref, number in live.refs.items():
            try:
                current = await asyncio.to_thread(self._registry.resolve, live.spec.model, ref)
            except NotFound:
                continue
            if current.version != number:
                return True
        return False

    async def sync(self, name: str) -> Live | None:
        """Make what is served for ``name`` match its record (load, swap or remove)."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            row = await asyncio.to_thread(self._find, name)
            if row is None:
                old = self._live.pop(name, None)
                if old is not None:
                    await self._retire([s for s, _ in old.routes], grace=0)
                    self.metrics.forget(name)
                return None
            spec = DeploymentSpec.model_validate(row.spec)
            old = self._live.get(name)
            live = Live(name=name, spec=spec)
            if old is None:
                self._live[name] = live
            try:
                await self._load(live, old)
            except ModelyardError as exc:
                live.status, live.error = "failed", exc.detail
            except Exception as exc:
                log.exception("loading deployment %s failed", name)
                live.status, live.error = "failed", f"{type(exc).__name__}: {exc}"
            if live.status == "failed" and old is not None and old.routes:
                # Keep serving what worked; report the failed change.
                old.error = live.error
                return old
            self._live[name] = live
            if old is not None:
                kept = {id(s) for s, _ in live.routes}
                stale = [s for s, _ in old.routes if id(s) not in kept]
                task = asyncio.create_task(self._retire(stale, grace=SWAP_GRACE_S))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
            return live

    def _find(self, name: str) -> Deployment | None:
        return next((r for r in self._deployments.all() if r.name == name), None)

    async def _load(self, live: Live, old: Live | None) -> None:
        spec = live.spec
        if spec.pipeline is not None:
            live.status = "ready"
            return
        assert spec.model is not None
        entries = spec.traffic or []
        refs = [e.version for e in entries] or [spec.version]
        weights = [e.weight for e in entries] or [1.0]
        reusable = {s.number: s for s, _ in (old.routes if old else [])}
        same_serving = old is not None and _same_serving(old.spec, spec)
        for ref, weight in zip(refs, weights, strict=True):
            version = await asyncio.to_thread(self._registry.resolve, spec.model, ref)
            live.refs[ref] = version.version
            served = reusable.get(version.version) if same_serving else None
            if served is None:
                served = await self._serve_version(live.name, spec, version)
            live.routes.append((served, weight))
        live.status = "ready"

    async def _serve_version(
        self, name: str, spec: DeploymentSpec, version: ModelVersion
    ) -> Served:
        if version.format == "hf":
            runtime = await asyncio.to_thread(self._load_hf, name, spec, version)
            if runtime.kind == "causal_lm":
                engine = runtime.engine
                engine.observer = self.metrics.llm.observer(
                    name,
                    str(version.version),
                    running=lambda: engine.running,
                    waiting=lambda: engine.queue_depth,
                )
                return Served(version=version, runtime=runtime, batcher=None)
        else:
            runtime = await asyncio.to_thread(self._load_runtime, spec, version)
        config = BatchConfig(
            max_batch_size=spec.max_batch_size,
            max_batch_delay_ms=spec.max_batch_delay_ms,
            max_queue=spec.max_queue,
            timeout_ms=spec.timeout_ms,
            workers=spec.replicas,
        )
        batcher = Batcher(
            runtime.infer,
            config,
            name=f"{name}:{version.version}",
            observer=self.metrics.observer(name, str(version.version)),
        )
        await batcher.start()
        heap.settle()  # what the model brought lives as long as it is served
        return Served(version=version, runtime=runtime, batcher=batcher)

    def _load_runtime(self, spec: DeploymentSpec, version: ModelVersion) -> Any:
        from modelyard.runtimes import VersionArtifact, load_runtime

        with scratch_dir(self._settings.tmp_dir, "serve-") as work:
            runtime = load_runtime(
                VersionArtifact(
                    format=version.format,
                    path=self._artifact_path(version, work),
                    spec=version.spec,
                    signature=version.signature,
                    params=version.params,
                ),
                runtime=spec.runtime,
                device=spec.device,
                work_dir=work / "derived",
            )
            sample = _sample_inputs(runtime)
            if sample is not None:
                runtime.infer(sample)  # warm-up: the first call pays for lazy set-up
        return runtime

    def _load_hf(self, name: str, spec: DeploymentSpec, version: ModelVersion) -> Any:
        from modelyard.llm import load_hf_model
        from modelyard.registry.hf import unpack_hf

        with scratch_dir(self._settings.tmp_dir, "serve-") as work:
            folder = unpack_hf(
                self._artifact_path(version, work),
                work / "unpacked",
                max_bytes=self._settings.max_upload_bytes * 4,
            )
            return load_hf_model(
                folder,
                kind=str((version.spec or {}).get("kind", "causal_lm")),
                device=spec.device,
                max_running=spec.max_batch_size,
                max_queue=spec.max_queue,
                name=f"{name}:{version.version}",
            )

    def _artifact_path(self, version: ModelVersion, work: Path) -> Path:
        """The version's artifact as a file in ``work``: a link to a plaintext local blob,
        else its plaintext fetched (decrypted) from the store."""
        target = work / f"model{SUFFIX.get(version.format, '')}"
        local = self._blobs.local_path(version.sha256)
        if local is not None:
            target.symlink_to(local)
            return target
        return self._blobs.fetch_to(version.sha256, target)

    async def _retire(self, served: list[Served], *, grace: float) -> None:
        if grace:
            await asyncio.sleep(grace)
        for item in served:
            if item.batcher is not None:
                await item.batcher.stop(drain=True)
            close = getattr(item.runtime, "close", None)
            if close is not None:
                await asyncio.to_thread(close)

    # -- inference -------------------------------------------------------------------
    async def infer(
        self,
        name: str,
        inputs: Mapping[str, np.ndarray],
        *,
        version: str | None = None,
        deadline: float | None = None,
        postprocess: bool = True,
    ) -> InferResult:
        """Run one request through a deployment (batched with others)."""
        live = self.get(name)
        if live.spec.pipeline is not None:
            if version is not None:
                raise NotFound(f"deployment '{name}' is a pipeline; it has no versions")
            return await self._pipeline(live, dict(inputs), deadline)
        served = live.pick(version)
        if served.batcher is None:
            raise InvalidInput(
                f"deployment '{name}' serves a language model; use /v1/chat/completions or "
                "/v1/completions"
            )
        metrics = self.metrics.version(name, str(served.number))
        started = time.perf_counter()
        try:
            outputs = await served.batcher.submit(dict(inputs), deadline=deadline)
        except ModelyardError as exc:
            metrics.failed(exc.status)
            raise
        metrics.succeeded(time.perf_counter() - started)
        if postprocess:
            outputs = self._postprocess(live.spec, served, outputs)
        return InferResult(name, served.number, outputs)

    def _postprocess(
        self, spec: DeploymentSpec, served: Served, outputs: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        post = spec.postprocess
        if not post.softmax and post.top_k is None:
            return outputs
        from modelyard.runtimes import postprocess
        from modelyard.runtimes.outputs import output_kind

        params = served.version.params or {}
        classes = (params.get("preprocessing") or {}).get("classes")
        result: dict[str, np.ndarray] = postprocess(
            outputs,
            softmax=post.softmax,
            top_k=post.top_k,
            classes=classes,
            output_kind=output_kind(params),
        )
        return result

    async def _pipeline(
        self, live: Live, inputs: dict[str, np.ndarray], deadline: float | None
    ) -> InferResult:
        assert live.spec.pipeline is not None
        current = inputs
        last: InferResult | None = None
        for index, stage in enumerate(live.spec.pipeline):
            last_stage = index == len(live.spec.pipeline) - 1
            last = await self.infer(stage, current, deadline=deadline, postprocess=last_stage)
            if not last_stage:
                current = self._feed(stage, live.spec.pipeline[index + 1], last.outputs)
        assert last is not None
        return InferResult(live.name, None, last.outputs)

    def _feed(self, stage: str, nxt: str, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Map one stage's outputs onto the next stage's inputs: by name, or one to one."""
        target = self.get(nxt)
        if target.spec.pipeline is not None or not target.routes:
            return outputs
        wanted = [t.name for t in target.routes[0][0].runtime.inputs]
        if all(w in outputs for w in wanted):
            return {w: outputs[w] for w in wanted}
        if len(wanted) == 1 and len(outputs) >= 1:
            return {wanted[0]: next(iter(outputs.values()))}
        raise InvalidInput(
            f"pipeline: '{stage}' outputs {sorted(outputs)} do not match the inputs "
            f"{wanted} of '{nxt}'"
        )


def _same_serving(a: DeploymentSpec, b: DeploymentSpec) -> bool:
    """Whether loaded versions can be reused (only the version choice changed)."""
    keep = {"version", "traffic"}
    return a.model_dump(exclude=keep) == b.model_dump(exclude=keep)


def _sample_inputs(runtime: Any) -> dict[str, np.ndarray] | None:
    """One row of zeros per input, or None when an input's shape is not recorded
    (TorchScript keeps none), in which case the model is not warmed up."""
    from modelyard.serving.oip import OIP_TO_NUMPY

    sample: dict[str, np.ndarray] = {}
    for spec in runtime.inputs:
        if spec.shape is None or spec.datatype is None:
            return None
        shape = [1 if d < 0 else d for d in spec.shape]
        sample[spec.name] = np.zeros(shape, dtype=OIP_TO_NUMPY[spec.datatype])
    return sample
