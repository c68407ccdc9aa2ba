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
import functools
import itertools
import logging
import os
import random
import shutil
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard

import numpy as np

from modelyard.config import Settings
from modelyard.db.tables import Deployment, ModelVersion
from modelyard.errors import (
    Conflict,
    DeadlineExceeded,
    InvalidInput,
    ModelyardError,
    NotFound,
    TooManyRequests,
    Unavailable,
)
from modelyard.formats import FILE_SUFFIX
from modelyard.registry.service import ModelRegistry
from modelyard.runtimes import (
    Runtime,
    TensorRuntime,
    VersionArtifact,
    load_runtime,
    postprocess,
)
from modelyard.runtimes.outputs import output_kind
from modelyard.serving import heap
from modelyard.serving.adapters import LORA_FORMAT, load_adapter
from modelyard.serving.batcher import BatchConfig, Batcher, BatchQueue
from modelyard.serving.compat import Interface, feed_differences, swap_differences
from modelyard.serving.explain import ExplainLimits, ExplainOptions, Explanation, explain
from modelyard.serving.metrics import ServingMetrics
from modelyard.serving.oip import OIP_TO_NUMPY
from modelyard.serving.service import DeploymentService
from modelyard.serving.spec import DeploymentSpec
from modelyard.storage.base import BlobStore
from modelyard.storage.staging import scratch_dir

if TYPE_CHECKING:
    from modelyard.llm import LanguageModel, TextEmbedder

log = logging.getLogger("modelyard.serving")

# How often deployments are compared with the registry (aliases may move at any time, also
# from another server process sharing the database).
RECONCILE_S = 2.0
# How often the change stamp is looked at: a deployment changed through another process of
# this server (or another server on this data dir) is reconciled within this time.
STAMP_S = 0.2
# The file a process replaces whenever it changes what a deployment serves.
STAMP_FILE = "deployments.changed"
# How long a swapped-out version keeps accepting requests that already picked it.
SWAP_GRACE_S = 1.0


@dataclass
class Served:
    """One loaded version of one deployment."""

    version: ModelVersion
    runtime: TensorRuntime | LanguageModel
    """The loaded model: tensors in and out, or a language model (its own engine)."""
    batcher: BatchQueue | None
    """None for a language model: its engine batches on its own (``runtime.engine``)."""

    @property
    def number(self) -> int:
        return self.version.version

    @property
    def language_model(self) -> LanguageModel | None:
        """The runtime when it is a language model, else None."""
        return self.runtime if _is_language_model(self.runtime) else None


def _is_language_model(runtime: TensorRuntime | LanguageModel) -> TypeGuard[LanguageModel]:
    # LanguageModel is not imported at run time: that would load torch with the server.
    return getattr(runtime, "kind", None) == "causal_lm"


VersionLoader = Callable[[str, DeploymentSpec, ModelVersion], Awaitable[Served]]
"""``(deployment name, spec, version) -> Served``: loads, warms up and batches one version."""


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
        self._stamp_path = settings.data_dir / STAMP_FILE
        self._task: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._explain_slots = asyncio.Semaphore(settings.explain_concurrency)
        self._explain_limits = ExplainLimits.from_settings(settings)
        self.load_version: VersionLoader = self._serve_version
        """Where versions are loaded: here, or in a model process (``serving/split.py``)."""

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Serve every stored deployment (they survive restarts), then keep them in sync."""
        # Earlier releases kept plaintext copies of served models here, also of encrypted ones.
        await asyncio.to_thread(
            shutil.rmtree, self._settings.data_dir / "serving-cache", ignore_errors=True
        )
        rows = await asyncio.to_thread(self._deployments.all)
        # Pipelines and adapters after what they run on.
        for row in sorted(
            rows, key=lambda r: (bool(r.spec.get("pipeline")), bool(r.spec.get("base")))
        ):
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
    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self._stamp_path.stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    def _announce(self) -> None:
        """Tell other processes on this data dir to reconcile now: the stamp is replaced, so
        its inode changes even where file times are coarse."""
        part = self._stamp_path.with_name(f".{STAMP_FILE}.{os.getpid()}")
        try:
            part.write_bytes(b"")
            os.replace(part, self._stamp_path)
        except OSError:
            log.warning("could not write %s; other processes reconcile later", self._stamp_path)

    async def _reconcile_forever(self) -> None:
        seen = self._stamp()
        due = time.monotonic() + RECONCILE_S
        while True:
            await asyncio.sleep(STAMP_S)
            stamp = self._stamp()
            if stamp == seen and time.monotonic() < due:
                continue
            seen, due = stamp, time.monotonic() + RECONCILE_S
            try:
                rows = {r.name: r for r in await asyncio.to_thread(self._deployments.all)}
                for name in set(self._live) - set(rows):
                    await self.sync(name)
                for name, row in rows.items():
                    live = self._live.get(name)
                    # Compared as specs: a row stored before a field existed lacks it.
                    changed = live is None or live.spec != DeploymentSpec.model_validate(row.spec)
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

    async def sync(self, name: str, *, force: bool = False) -> Live | None:
        """Make what is served for ``name`` match its record (load, swap or remove).

        When only a version reference moved (an alias, or ``latest`` after a push or a job)
        and the version it now names takes or returns other tensors than the deployment
        serves, the version is not swapped in unless ``force``: the deployment goes on
        serving what it did and says why in its ``error``.
        """
        async with self._lock(name):
            row = await asyncio.to_thread(self._find, name)
            if row is None:
                old = self._live.pop(name, None)
                if old is not None:
                    await self._retire([s for s, _ in old.routes], grace=0)
                    self.metrics.forget(name)
                    self._announce()
                return None
            spec = DeploymentSpec.model_validate(row.spec)
            old = self._live.get(name)
            guarded = not force and old is not None and bool(old.routes) and old.spec == spec
            if guarded and old is not None and await self._hold_unfit_moves(old):
                return old
            live = Live(name=name, spec=spec)
            if old is None:
                self._live[name] = live
            try:
                await self._load(live, old)
                unconfirmed = guarded and old is not None and _unaccepted_moves(old, live)
                if unconfirmed and old is not None and (problems := self._swap_problems(old, live)):
                    await self._drop_new(live, old)
                    self._hold(old, live.refs, problems)
                    return old
            except ModelyardError as exc:
                live.status, live.error = "failed", exc.detail
            except Exception as exc:
                log.exception("loading deployment %s failed", name)
                live.status, live.error = "failed", f"{type(exc).__name__}: {exc}"
            if live.status == "failed" and old is not None and old.routes:
                # Keep serving what worked; report the failed change.
                await self._drop_new(live, old)
                old.error = live.error
                return old
            self._install(live, old)
            return live

    async def apply(
        self,
        name: str,
        spec: DeploymentSpec,
        store: Callable[[DeploymentSpec], Deployment],
        *,
        replacing: bool,
        force: bool = False,
    ) -> tuple[Deployment, Live]:
        """Serve ``spec`` as deployment ``name``: load and warm up what it serves, check it,
        then store its record (``store(spec)``) and route requests to it.

        Nothing is stored when a check fails, and what was served before goes on:

        - InvalidInput (422): a version does not load (on the runtime asked for), the stages
          of a pipeline do not fit one another, or ``postprocess`` cannot apply to the
          outputs;
        - Conflict (409): the new versions take or return other tensors than ``name`` serves
          now, or than one another in a traffic split (a swap that would break running
          clients), unless ``force``.

        ``replacing`` says whether ``name`` exists (a change) or is new; for a new one,
        whatever this server still serves under the name is stale and is neither reused nor
        compared with. With ``force`` the stored spec's ``accepted`` records the versions
        taken in, so that every server swaps to them.
        """
        async with self._lock(name):
            old = self._live.get(name)
            current = old if replacing else None
            live = Live(name=name, spec=spec)
            try:
                await self._load(live, current)
            except ModelyardError:
                await self._drop_new(live, current)
                raise
            except Exception as exc:
                await self._drop_new(live, current)
                log.exception("loading deployment %s failed", name)
                raise InvalidInput(
                    f"deployment '{name}' does not load: {type(exc).__name__}: {exc}"
                ) from exc
            if force and spec.model is not None:
                accepted = {ref: n for ref, n in live.refs.items() if not ref.isdigit()}
                live.spec = spec = spec.model_copy(update={"accepted": accepted})
            try:
                self._check(live, current, force=force)
                row = await asyncio.to_thread(store, spec)
            except BaseException:
                await self._drop_new(live, current)
                raise
            self._install(live, old)
            return row, live

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _install(self, live: Live, old: Live | None) -> None:
        """Route requests to ``live``; what ``old`` served and ``live`` does not drains."""
        self._live[live.name] = live
        self._announce()
        if old is not None and old is not live:
            kept = {id(s) for s, _ in live.routes}
            stale = [s for s, _ in old.routes if id(s) not in kept]
            task = asyncio.create_task(self._retire(stale, grace=SWAP_GRACE_S))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _drop_new(self, live: Live, old: Live | None) -> None:
        """Release what ``live`` loaded that ``old`` was not serving already."""
        kept = {id(s) for s, _ in (old.routes if old else [])}
        await self._retire([s for s, _ in live.routes if id(s) not in kept], grace=0)
        if self._live.get(live.name) is live:
            if old is not None:
                self._live[live.name] = old
            else:
                self._live.pop(live.name, None)

    # -- checks before a swap --------------------------------------------------------
    def interface(self, live: Live) -> Interface | None:
        """The tensors a deployment takes and returns (a pipeline: its first stage's inputs,
        its last stage's outputs); None when they are not known on this server."""
        if live.spec.pipeline is not None:
            first = self._stage_interface(live.spec.pipeline[0], {live.name})
            last = self._stage_interface(live.spec.pipeline[-1], {live.name})
            if first is None or last is None:
                return None
            return Interface(first.inputs, last.outputs)
        if not live.routes:
            return None
        return Interface.of_runtime(live.routes[0][0].runtime)

    def _stage_interface(self, name: str, seen: set[str]) -> Interface | None:
        live = self._live.get(name)
        if live is None or name in seen:
            return None
        if live.spec.pipeline is None:
            return self.interface(live)
        first = self._stage_interface(live.spec.pipeline[0], seen | {name})
        last = self._stage_interface(live.spec.pipeline[-1], seen | {name})
        return Interface(first.inputs, last.outputs) if first and last else None

    def _check(self, live: Live, old: Live | None, *, force: bool) -> None:
        """Refuse a spec whose pipeline or postprocessing cannot work, or (unless ``force``)
        a swap that changes the tensors clients send and read."""
        spec = live.spec
        if spec.pipeline is not None:
            problems = self.pipeline_problems(spec.pipeline, live.name)
            if problems:
                raise InvalidInput(
                    f"pipeline: the stages do not fit: {'; '.join(problems)}", field="pipeline"
                )
        interface = self.interface(live)
        if interface is not None:
            problem = postprocess_problem(spec, interface)
            if problem:
                raise InvalidInput(f"postprocess: {problem}", field="postprocess")
        if force:
            return
        problems = self._swap_problems(old, live)
        if problems:
            what = "a pipeline" if spec.pipeline else "the versions"
            raise Conflict(
                f"deployment '{live.name}': {what} to serve would break its clients: "
                f'{"; ".join(problems)}. Send "force": true to swap anyway'
            )

    def pipeline_problems(self, stages: list[str], name: str) -> list[str]:
        """Where one stage's outputs cannot feed the next stage's inputs."""
        problems: list[str] = []
        for producer, consumer in itertools.pairwise(stages):
            made = self._stage_interface(producer, {name})
            taken = self._stage_interface(consumer, {name})
            if made is not None and taken is not None:
                problems += feed_differences(producer, made.outputs, consumer, taken.inputs)
        return problems

    def _swap_problems(self, old: Live | None, live: Live) -> list[str]:
        """How what ``live`` serves differs from what ``old`` served (or, for a traffic
        split, from its first version)."""
        reference = self.interface(old) if old is not None else None
        kept = {id(s) for s, _ in (old.routes if old else [])}
        problems: list[str] = []
        if live.spec.pipeline is not None:
            new = self.interface(live)
            if reference is not None and new is not None:
                problems += swap_differences(reference, new)
            return problems
        for served, _ in live.routes:
            here = Interface.of_runtime(served.runtime)
            if reference is None:
                reference = here
                continue
            if id(served) in kept:
                continue
            problems += [f"version {served.number}: {d}" for d in swap_differences(reference, here)]
        return problems

    async def _hold_unfit_moves(self, live: Live) -> bool:
        """Whether a reference of ``live`` moved to a version whose record shows other
        tensors than ``live`` serves; if so, ``live`` keeps serving and reports it."""
        assert live.spec.model is not None
        served = self.interface(live)
        if served is None:
            return False
        moved: dict[str, int] = {}
        problems: list[str] = []
        for ref, number in live.refs.items():
            try:
                current = await asyncio.to_thread(self._registry.resolve, live.spec.model, ref)
            except NotFound:
                continue
            if current.version == number:
                continue
            moved[ref] = current.version
            if live.spec.accepted.get(ref) == current.version:
                continue  # taken in by force
            differences = swap_differences(served, Interface.of_version(current))
            problems += [f"version {current.version}: {d}" for d in differences]
        if not problems:
            return False
        self._hold(live, moved, problems)
        return True

    def _hold(self, live: Live, moved: Mapping[str, int], problems: list[str]) -> None:
        # Remember the references as seen, so the next reconcile does not try again.
        live.refs.update(moved)
        refs = ", ".join(f"'{ref}'" for ref in moved)
        live.error = (
            f"{refs} of model '{live.spec.model}' moved to a version that would break this "
            f"deployment's clients, so it still serves version "
            f"{', '.join(str(s.number) for s, _ in live.routes)}: {'; '.join(problems)}. "
            "Update the deployment with force to serve it"
        )
        log.warning("deployment %s: %s", live.name, live.error)

    def move_problems(self, model: str, ref: str, new: Interface) -> list[str]:
        """What pointing ``ref`` of ``model`` at a version with tensors ``new`` would break,
        per deployment that follows ``ref`` (blocking: call it in a thread)."""
        problems: list[str] = []
        for name in self.followers(model, ref):
            live = self._live.get(name)
            current = self.interface(live) if live is not None else None
            if current is None:
                try:
                    current = Interface.of_version(self._registry.resolve(model, ref))
                except NotFound:
                    continue
            problems += [f"deployment '{name}': {d}" for d in swap_differences(current, new)]
        return problems

    def refuse_breaking_move(self, model: str, ref: str, new: Interface, what: str) -> None:
        """Conflict (409) naming each difference if pointing ``ref`` of ``model`` at a
        version with tensors ``new`` would break a deployment that follows it (blocking).

        ``what`` names the change for the message: ``moving 'prod' of 'digits' to version 2``.
        """
        problems = self.move_problems(model, ref, new)
        if problems:
            raise Conflict(
                f"{what} would break the deployments that follow '{ref}': "
                f"{'; '.join(problems)}. Force it (force=true; --force in the CLI) to go ahead "
                "anyway"
            )

    def followers(self, model: str, ref: str) -> list[str]:
        """Names of the deployments serving ``ref`` of ``model`` (blocking)."""
        names = []
        for row in self._deployments.all():
            spec = DeploymentSpec.model_validate(row.spec)
            if spec.model == model and ref in spec.versions_wanted():
                names.append(row.name)
        return sorted(names)

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
                where = f"version {version.version} of '{spec.model}'"
                try:
                    served = await self.load_version(live.name, spec, version)
                except ModelyardError as exc:
                    exc.detail = f"{where}: {exc.detail}"
                    raise
                except Exception as exc:
                    log.warning("deployment %s: %s does not load", live.name, where, exc_info=True)
                    raise InvalidInput(
                        f"{where} does not load on runtime '{spec.runtime}': {_reason(exc)}"
                    ) from exc
            live.routes.append((served, weight))
        live.status = "ready"

    async def _serve_version(
        self, name: str, spec: DeploymentSpec, version: ModelVersion
    ) -> Served:
        runtime: Runtime | TextEmbedder
        if version.format == LORA_FORMAT:
            if spec.base is not None and self.status(spec.base) is None:
                # The base may be new here (made through another process): load it first.
                with contextlib.suppress(ModelyardError):
                    await self.loaded(spec.base)
            adapted = await asyncio.to_thread(self._load_adapter, name, spec, version)
            return Served(version=version, runtime=adapted, batcher=None)
        if version.format == "hf":
            # Loaded by _load_hf by now; imported at the top it would load torch with the server.
            from modelyard.llm import LanguageModel

            loaded = await asyncio.to_thread(self._load_hf, name, spec, version)
            if isinstance(loaded, LanguageModel):
                engine = loaded.engine
                engine.observer = self.metrics.llm.observer(
                    name,
                    str(version.version),
                    running=lambda: engine.running,
                    waiting=lambda: engine.queue_depth,
                )
                return Served(version=version, runtime=loaded, batcher=None)
            runtime = loaded
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
        self.metrics.watch_queue(name, str(version.version), batcher)
        await batcher.start()
        heap.settle()  # what the model brought lives as long as it is served
        return Served(version=version, runtime=runtime, batcher=batcher)

    def _load_runtime(self, spec: DeploymentSpec, version: ModelVersion) -> Runtime:
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

    def _load_hf(
        self, name: str, spec: DeploymentSpec, version: ModelVersion
    ) -> LanguageModel | TextEmbedder:
        # Language models need torch and transformers, loaded with the first one served.
        from modelyard.llm import load_hf_model
        from modelyard.registry.formats.hf import unpack_hf

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

    def _load_adapter(
        self, name: str, spec: DeploymentSpec, version: ModelVersion
    ) -> LanguageModel:
        """A LoRA adapter version, attached to the model its base deployment serves."""
        with scratch_dir(self._settings.tmp_dir, "serve-") as work:
            archive = self._artifact_path(version, work)
            limit = self._settings.max_upload_bytes * 4
            return load_adapter(
                self.status, name, spec, version, archive, work, limit, self.metrics.llm
            )

    def _artifact_path(self, version: ModelVersion, work: Path) -> Path:
        """The version's artifact as a file in ``work``: a link to a plaintext local blob,
        else its plaintext fetched (decrypted) from the store."""
        target = work / f"model{FILE_SUFFIX.get(version.format, '')}"
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
        live = self._live.get(name)
        if live is None or not live.routes:
            live = await self.loaded(name)
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

    async def loaded(self, name: str) -> Live:
        """``name`` once a load of it in progress here has ended.

        A deployment created through another process of the server, and not loaded here yet,
        is loaded by its first request here: requests wait for it instead of answering 503.
        """
        lock = self._lock(name)
        if lock.locked():
            async with lock:
                pass
        elif name not in self._live and await self.sync(name) is None and not lock.locked():
            self._locks.pop(name, None)  # an unknown name leaves nothing behind
        return self.get(name)

    # -- explanations ----------------------------------------------------------------
    async def explain(
        self,
        name: str,
        inputs: Mapping[str, np.ndarray],
        options: ExplainOptions,
        *,
        version: str | None = None,
    ) -> tuple[Served, Explanation]:
        """Attributions of one of the versions ``name`` serves (see
        :mod:`modelyard.serving.explain`), computed on a thread of its own.

        At most ``explain_concurrency`` explanations run at once; a request waits for a
        slot, and the whole takes at most ``explain_timeout_s`` (429 when no slot came, 504
        when the computation ran out of time). The model rows of one call are at most the
        deployment's ``max_batch_size``.
        """
        live = self.get(name)
        if live.spec.pipeline is not None:
            raise InvalidInput(
                f"deployment '{name}' is a pipeline; explain one of its stages "
                f"({', '.join(live.spec.pipeline)})"
            )
        served = live.pick(version)
        if served.batcher is None:
            raise InvalidInput(f"deployment '{name}' serves a language model; it has no explainer")
        timeout = self._settings.explain_timeout_s
        deadline = time.monotonic() + timeout
        try:
            await asyncio.wait_for(self._explain_slots.acquire(), timeout)
        except TimeoutError:
            raise TooManyRequests(
                f"{self._settings.explain_concurrency} explanations are running on this server "
                "(MODELYARD_EXPLAIN_CONCURRENCY); try again",
                retry_after=1,
            ) from None
        stop = threading.Event()

        def check() -> None:
            if stop.is_set():
                raise Unavailable("the explanation was abandoned")
            if time.monotonic() > deadline:
                raise DeadlineExceeded(
                    f"the explanation took longer than {timeout:g} s "
                    "(MODELYARD_EXPLAIN_TIMEOUT_S); ask for fewer rows, steps or samples"
                )

        work = functools.partial(
            explain,
            served.runtime,
            inputs,
            options,
            self._explain_limits,
            batch_rows=live.spec.max_batch_size,
            check=check,
        )
        future = asyncio.get_running_loop().run_in_executor(None, work)
        # The slot is free once the thread is done, not when a client gives up on it.
        future.add_done_callback(lambda _: self._explain_slots.release())
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            stop.set()
            raise
        return served, result

    def _postprocess(
        self, spec: DeploymentSpec, served: Served | None, outputs: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        post = spec.postprocess
        if not post.softmax and post.top_k is None:
            return outputs
        params = (served.version.params if served is not None else None) or {}
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
        """Each stage's outputs feed the next; the last stage's are the answer, postprocessed
        as the pipeline says (else as the last stage's own deployment says)."""
        stages = live.spec.pipeline
        assert stages is not None
        post = live.spec.postprocess
        own_postprocess = post.softmax or post.top_k is not None
        current = inputs
        last: InferResult | None = None
        for index, stage in enumerate(stages):
            last_stage = index == len(stages) - 1
            last = await self.infer(
                stage,
                current,
                deadline=deadline,
                postprocess=last_stage and not own_postprocess,
            )
            if not last_stage:
                current = self._feed(stage, stages[index + 1], last.outputs)
        assert last is not None
        outputs = last.outputs
        if own_postprocess:
            final = self.get(stages[-1])
            served = (
                final.pick(str(last.version))
                if last.version is not None and final.spec.pipeline is None
                else None
            )
            outputs = self._postprocess(live.spec, served, outputs)
        return InferResult(live.name, None, outputs)

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


def _reason(exc: Exception) -> str:
    """What went wrong, in one line: engines (the TorchScript interpreter) put their
    traceback first and the error last."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[-1] if lines else type(exc).__name__
    return text if ":" in text else f"{type(exc).__name__}: {text}"


def postprocess_problem(spec: DeploymentSpec, interface: Interface) -> str | None:
    """Why ``spec.postprocess`` cannot apply to outputs ``interface.outputs``, or None.

    Probabilities and top-k are computed from the scores: the output named ``output``, else
    the only output; top-k needs more than one score per row.
    """
    post = spec.postprocess
    if not post.softmax and post.top_k is None:
        return None
    outputs = {t.name: t for t in interface.outputs}
    if not outputs:
        return None
    scores = outputs.get("output") or (next(iter(outputs.values())) if len(outputs) == 1 else None)
    if scores is None:
        return (
            f"softmax and top_k need one output of scores, named 'output' or the only one; "
            f"the model returns {sorted(outputs)}"
        )
    shape = scores.shape
    if shape is not None and len(shape) != 2:
        return f"softmax and top_k need scores of shape [N, C]; {scores.name!r} is {shape}"
    if post.top_k is not None and shape is not None and shape[-1] == 1:
        return f"top_k: {scores.name!r} has a single column; there is no ranking"
    return None


def _unaccepted_moves(old: Live, live: Live) -> bool:
    """Whether ``live`` serves a reference at another version than ``old`` did, one that was
    not taken in by force."""
    return any(
        old.refs.get(ref) != number and live.spec.accepted.get(ref) != number
        for ref, number in live.refs.items()
    )


def _same_serving(a: DeploymentSpec, b: DeploymentSpec) -> bool:
    """Whether loaded versions can be reused (only the version choice changed)."""
    keep = {"version", "traffic", "accepted"}
    return a.model_dump(exclude=keep) == b.model_dump(exclude=keep)


def _sample_inputs(runtime: TensorRuntime) -> dict[str, np.ndarray] | None:
    """One row of zeros per input, or None when an input's shape is not recorded
    (TorchScript keeps none), in which case the model is not warmed up."""
    sample: dict[str, np.ndarray] = {}
    for spec in runtime.inputs:
        if spec.shape is None or spec.datatype is None:
            return None
        shape = [1 if d < 0 else d for d in spec.shape]
        sample[spec.name] = np.zeros(shape, dtype=OIP_TO_NUMPY[spec.datatype])
    return sample
