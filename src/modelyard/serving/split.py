"""A server whose models live in one process behind thin HTTP processes (LitServe's split).

With ``MODELYARD_SERVING_SPLIT`` and ``--workers N``, N HTTP processes parse, authenticate
and route requests as always, and each keeps its own :class:`DeploymentManager` (records,
hot swaps, reconciles). What differs is where a version is loaded: each manager's
``load_version`` is a :class:`RemoteVersions`, which asks the model process to load it and
gets back a :class:`RemoteRuntime` (the tensors it takes and returns) and a
:class:`RemoteBatcher`. The model process (:class:`ModelHost`) loads each version once, for
every HTTP process that serves it, with one batcher: its bounded queue (429) and the
requests' deadlines (504, on the machine's monotonic clock) hold for the whole server.

HTTP process                                       model process
  DeploymentManager.infer ─ RemoteBatcher.submit ──frame──▶ ModelHost ─ Batcher.submit
                          ◀──────────── outputs or a plain error record ──

Frames (:mod:`modelyard.serving.wire`) go over one Unix socket per HTTP process and are
answered out of order, matched by request id. A version is released when no HTTP process
holds it: after a swap's grace period, on delete, or when an HTTP process's connection ends.
Language models (Hugging Face folders) are loaded in each HTTP process as without the split;
explanations need the model in the process that computes them and are refused (422).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import socket
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydantic_core

from modelyard.db.tables import ModelVersion
from modelyard.errors import (
    Conflict,
    DeadlineExceeded,
    InvalidInput,
    ModelyardError,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unavailable,
    UnsupportedFormat,
)
from modelyard.registry.formats.lora import LORA_FORMAT
from modelyard.registry.service import ModelRegistry
from modelyard.runtimes.tensors import TensorSpec
from modelyard.serving import wire
from modelyard.serving.manager import DeploymentManager, Served, VersionLoader
from modelyard.serving.spec import DeploymentSpec

log = logging.getLogger("modelyard.split")

# How long an HTTP process waits for the model process to listen (it builds a platform first).
CONNECT_TIMEOUT_S = 120.0
# Errors sent as records and raised again on the other side, by class name.
_ERRORS: dict[str, type[ModelyardError]] = {
    cls.__name__: cls
    for cls in (
        ModelyardError,
        InvalidInput,
        UnsupportedFormat,
        PayloadTooLarge,
        NotFound,
        Conflict,
        TooManyRequests,
        DeadlineExceeded,
        Unavailable,
    )
}
_SERVING_FIELDS = {"version", "traffic", "accepted"}


def address_for(folder: Path, pid: int) -> str:
    """The model process's socket: in Linux's abstract namespace (no file, no length limit
    from a deep data dir), elsewhere a file in ``folder``."""
    if sys.platform == "linux":
        return f"\0modelyard-models-{pid}"
    return str(folder / "models.sock")


def version_key(name: str, spec: DeploymentSpec, version: ModelVersion) -> str:
    """What identifies one loaded version in the model process: the same for every HTTP
    process serving it the same way."""
    how = spec.model_dump(mode="json", exclude=_SERVING_FIELDS)
    blob = pydantic_core.to_json([name, how, version.version, version.sha256])
    return f"{name}:{version.version}:{hashlib.sha256(blob).hexdigest()[:16]}"


def error_record(exc: ModelyardError) -> dict[str, Any]:
    """A plain record of ``exc``, raised again by :func:`raise_record`."""
    record: dict[str, Any] = {"kind": type(exc).__name__, "detail": exc.detail}
    if "retry_after" in exc.extra:
        record["retry_after"] = exc.extra["retry_after"]
    return record


def raise_record(record: Mapping[str, Any]) -> None:
    cls = _ERRORS.get(str(record.get("kind")), ModelyardError)
    extra = {"retry_after": record["retry_after"]} if "retry_after" in record else {}
    raise cls(str(record.get("detail", "the model process failed")), **extra)


def _specs(entries: list[list[Any]]) -> list[TensorSpec]:
    return [TensorSpec(str(n), d, list(s) if s is not None else None) for n, d, s in entries]


def _entries(specs: Any) -> list[list[Any]]:
    return [[s.name, s.datatype, s.shape] for s in specs]


# -- the HTTP processes' side ------------------------------------------------------------


class ModelProcessClient:
    """One HTTP process's connection to the model process, shared by all its requests."""

    def __init__(self, address: str, *, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.address = address
        self._connect_timeout_s = connect_timeout_s
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[tuple[wire.Header, wire.Arrays]]] = {}
        self._ids = itertools.count(1)
        self._connecting = asyncio.Lock()
        self._draining = asyncio.Lock()

    async def _connect(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is not None:
                return self._writer
            deadline = time.monotonic() + self._connect_timeout_s
            while True:
                try:
                    reader, writer = await asyncio.open_unix_connection(
                        sock=_connected(self.address)
                    )
                    break
                except OSError as exc:
                    if time.monotonic() > deadline:
                        raise Unavailable(f"the model process does not answer: {exc}") from None
                    await asyncio.sleep(0.1)
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read(reader), name="model-process")
            return writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                header, arrays = await wire.read(reader)
                future = self._pending.pop(int(header.get("id", 0)), None)
                if future is not None and not future.done():
                    future.set_result((header, arrays))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            log.error("the connection to the model process ended: %r", exc)
        finally:
            self._writer = None
            pending, self._pending = self._pending, {}
            for future in pending.values():
                if not future.done():
                    future.set_exception(Unavailable("the model process ended"))

    async def call(
        self, header: wire.Header, arrays: Mapping[str, np.ndarray] | None = None
    ) -> tuple[wire.Header, wire.Arrays]:
        """Send one request and wait for its answer; a record of an error is raised again
        here as its :class:`ModelyardError`."""
        ident = next(self._ids)
        parts = wire.encode({**header, "id": ident}, arrays)  # InvalidInput before sending
        writer = self._writer or await self._connect()
        future: asyncio.Future[tuple[wire.Header, wire.Arrays]] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending[ident] = future
        writer.writelines(parts)
        if writer.transport.get_write_buffer_size() > 1 << 20:
            async with self._draining:
                await writer.drain()
        try:
            answer, outputs = await future
        finally:
            self._pending.pop(ident, None)
        if "error" in answer:
            raise_record(answer["error"])
        return answer, outputs

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task


def _connected(address: str) -> socket.socket:
    """A socket connected to ``address``, connected here: uvloop refuses addresses in Linux's
    abstract namespace (EINVAL) but takes a socket connected to one. A local connect does
    not wait unless the listener's backlog is full."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class RemoteRuntime:
    """What an HTTP process knows of a version the model process runs: its tensors."""

    def __init__(self, name: str, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
        self.name = name
        self.inputs = inputs
        self.outputs = outputs

    def _elsewhere(self) -> InvalidInput:
        return InvalidInput(
            "this server runs its models in a separate process (MODELYARD_SERVING_SPLIT); "
            "explanations are not served by it"
        )

    @property
    def pipeline(self) -> Any:
        raise self._elsewhere()

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise self._elsewhere()


class RemoteBatcher:
    """A version's batcher in the model process, as the HTTP process's manager uses it."""

    def __init__(self, client: ModelProcessClient, key: str) -> None:
        self._client = client
        self.key = key

    async def submit(
        self, inputs: dict[str, np.ndarray], *, deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        _, outputs = await self._client.call(
            {"op": "infer", "key": self.key, "deadline": deadline}, inputs
        )
        return outputs

    async def stop(self, drain: bool = True) -> None:
        """Release the version: the model process unloads it once no HTTP process holds it."""
        with contextlib.suppress(Unavailable):
            await self._client.call({"op": "release", "key": self.key})


class RemoteVersions:
    """``DeploymentManager.load_version`` of an HTTP process of a split server."""

    def __init__(self, client: ModelProcessClient, local: VersionLoader) -> None:
        self._client = client
        self._local = local

    async def __call__(self, name: str, spec: DeploymentSpec, version: ModelVersion) -> Served:
        if version.format in ("hf", LORA_FORMAT):  # language models and adapters: here
            return await self._local(name, spec, version)
        key = version_key(name, spec, version)
        answer, _ = await self._client.call(
            {
                "op": "load",
                "key": key,
                "name": name,
                "model": spec.model,
                "version": version.version,
                "spec": spec.model_dump(mode="json"),
            }
        )
        runtime = RemoteRuntime(
            str(answer["runtime"]), _specs(answer["inputs"]), _specs(answer["outputs"])
        )
        return Served(version=version, runtime=runtime, batcher=RemoteBatcher(self._client, key))


def serve_from(manager: DeploymentManager, address: str) -> ModelProcessClient:
    """Have ``manager`` load the versions it serves in the model process at ``address``."""
    client = ModelProcessClient(address)
    manager.load_version = RemoteVersions(client, manager.load_version)
    return client


# -- the model process's side ------------------------------------------------------------


@dataclass
class _Hosted:
    served: Served
    holders: Counter[int] = field(default_factory=Counter)


class ModelHost:
    """The model process: loads each version once and batches every HTTP process's
    requests for it; serve :meth:`handle` on a Unix socket."""

    def __init__(self, registry: ModelRegistry, load: VersionLoader) -> None:
        self._registry = registry
        self._load = load
        self._hosted: dict[str, _Hosted] = {}
        self._loading: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections = itertools.count(1)

    @property
    def loaded(self) -> list[str]:
        """Keys of the versions loaded now."""
        return sorted(self._hosted)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one HTTP process's frames until its connection ends, then release what it
        held."""
        connection = next(self._connections)
        drain = asyncio.Lock()
        try:
            while True:
                header, arrays = await wire.read(reader)
                task = asyncio.create_task(self._answer(connection, writer, drain, header, arrays))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except ValueError:
            log.exception("a malformed frame from an HTTP process; closing its connection")
        finally:
            writer.close()
            for key in [k for k, h in self._hosted.items() if h.holders.get(connection)]:
                hosted = self._hosted[key]
                hosted.holders.pop(connection, None)
                await self._release_if_unheld(key, hosted)

    async def _answer(
        self,
        connection: int,
        writer: asyncio.StreamWriter,
        drain: asyncio.Lock,
        header: wire.Header,
        arrays: wire.Arrays,
    ) -> None:
        reply: wire.Header = {"id": header.get("id", 0)}
        outputs: Mapping[str, np.ndarray] | None = None
        try:
            op = header.get("op")
            if op == "infer":
                outputs = await self._infer(str(header["key"]), arrays, header.get("deadline"))
            elif op == "load":
                reply.update(await self._hold(connection, header))
            elif op == "release":
                await self._release(connection, str(header["key"]))
            else:
                raise InvalidInput(f"unknown operation {op!r}")
        except ModelyardError as exc:
            reply["error"], outputs = error_record(exc), None
        except Exception as exc:
            log.exception("the model process failed on a %s request", header.get("op"))
            reply["error"], outputs = error_record(ModelyardError(f"{type(exc).__name__}")), None
        try:
            parts = wire.encode(reply, outputs)
        except InvalidInput as exc:
            parts = wire.encode({**reply, "error": error_record(exc)})
        if writer.is_closing():
            return
        writer.writelines(parts)
        if writer.transport.get_write_buffer_size() > 1 << 20:
            async with drain:
                with contextlib.suppress(ConnectionError):
                    await writer.drain()

    async def _infer(
        self, key: str, inputs: dict[str, np.ndarray], deadline: float | None
    ) -> dict[str, np.ndarray]:
        hosted = self._hosted.get(key)
        if hosted is None or hosted.served.batcher is None:
            raise Unavailable(f"version {key} is not loaded in the model process")
        return await hosted.served.batcher.submit(inputs, deadline=deadline)

    async def _hold(self, connection: int, header: wire.Header) -> dict[str, Any]:
        key = str(header["key"])
        async with self._loading.setdefault(key, asyncio.Lock()):
            hosted = self._hosted.get(key)
            if hosted is None:
                spec = DeploymentSpec.model_validate(header["spec"])
                if spec.model is None:
                    raise InvalidInput("only a model's versions are loaded in the model process")
                version = await asyncio.to_thread(
                    self._registry.resolve, spec.model, str(header["version"])
                )
                served = await self._load(str(header["name"]), spec, version)
                hosted = self._hosted[key] = _Hosted(served)
                log.info("loaded %s", key)
            hosted.holders[connection] += 1
        runtime = hosted.served.runtime
        return {
            "runtime": str(getattr(runtime, "name", "")),
            "inputs": _entries(runtime.inputs),
            "outputs": _entries(runtime.outputs),
        }

    async def _release(self, connection: int, key: str) -> None:
        hosted = self._hosted.get(key)
        if hosted is None or hosted.holders[connection] <= 0:
            return
        hosted.holders[connection] -= 1
        await self._release_if_unheld(key, hosted)

    async def _release_if_unheld(self, key: str, hosted: _Hosted) -> None:
        if +hosted.holders or self._hosted.get(key) is not hosted:
            return
        del self._hosted[key]
        self._loading.pop(key, None)
        log.info("released %s", key)
        await _unload(hosted.served)

    async def close(self) -> None:
        """Finish what is queued and unload every version."""
        hosted, self._hosted = list(self._hosted.values()), {}
        for item in hosted:
            await _unload(item.served)
        for task in list(self._tasks):
            task.cancel()


async def _unload(served: Served) -> None:
    if served.batcher is not None:
        await served.batcher.stop(drain=True)
    close = getattr(served.runtime, "close", None)
    if close is not None:
        await asyncio.to_thread(close)


__all__ = [
    "ModelHost",
    "ModelProcessClient",
    "RemoteBatcher",
    "RemoteRuntime",
    "RemoteVersions",
    "VersionLoader",
    "address_for",
    "serve_from",
    "version_key",
]
