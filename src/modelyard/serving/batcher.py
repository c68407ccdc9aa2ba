"""Dynamic batching: one deployment's requests leave their queue as batched ``infer`` calls.

::

    batcher = Batcher(runtime.infer, BatchConfig(max_batch_size=32, max_batch_delay_ms=2))
    await batcher.start()
    outputs = await batcher.submit({"x": rows})  # rows: (n, ...) -> outputs["y"]: (n, ...)
    await batcher.stop()

A controller task takes queued requests, oldest first, into a batch of at most
``max_batch_size`` rows. When no batch is computing, whatever is queued leaves at once
(``"idle"``): waiting while the workers stand still only adds latency, and requests that
arrive meanwhile queue up behind the batch and leave together when it is done. While a batch
computes and another worker is free, the next batch leaves when it is full (``"full"``), or
as soon as waiting for more rows no longer pays for itself (``"cost"``: see
:mod:`modelyard.serving.release`, which fits batch latency as ``a·n + b``), and at the latest
when ``max_batch_delay_ms`` has passed since its oldest request arrived (``"delay"``), so
``max_batch_delay_ms`` is an upper bound on the wait, never a floor. It concatenates each
input along axis 0, runs ``infer`` on a worker thread, splits the outputs by each request's
row count and resolves one future per request, with a single hop back to the event loop per
batch. While ``workers`` batches compute, the next requests wait in the queue, so under load
batches fill up on their own. Only requests with the same input names, dtypes and trailing
shapes share a batch; the others queue in their own group. Requests whose client went away
(their awaiting task was cancelled) or whose deadline passed are dropped before compute. A
batch that ``infer`` refuses as invalid input (one request's NaN, say) is computed again one
request at a time, so that only the requests at fault get the error.

Workers are threads. ``bench/batcher_threads_vs_processes.py`` on the 2-core development
machine while other jobs shared it (rows/s at batch 32, median of 5 alternating rounds)::

    model                  workers     threads   processes  thr/proc
    mlp 784-512-512-10           1       4,702         486      9.67
    mlp 784-512-512-10           2       6,879       7,708      0.89
    cnn 1x28x28 c32-c64          1         512         129      3.96
    cnn 1x28x28 c32-c64          2         741         718      1.03

An earlier run with one 3 s round per case gave thr/proc 0.81, 0.85, 3.56 and 0.84 for the
same rows. Processes were at best about 20 % ahead and at worst several times behind; torch
releases the GIL in its kernels, so they buy little parallelism, while they cost a copy of
the model per worker, a spawn that imports torch, a copy of every batch and a picklable
model. A deployment that needs isolation runs its whole batcher in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from queue import SimpleQueue
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from modelyard.errors import (
    DeadlineExceeded,
    InvalidInput,
    ModelyardError,
    TooManyRequests,
    Unavailable,
)
from modelyard.serving import defaults
from modelyard.serving.release import ReleasePolicy

log = logging.getLogger("modelyard.batcher")

Arrays = dict[str, np.ndarray]
InferFn = Callable[[Arrays], Arrays]
"""Runs a model on a batch: every array is batched along axis 0; called from worker threads."""

FULL = "full"
DELAY = "delay"
IDLE = "idle"
COST = "cost"
# Deadlines are watched in slots of this many seconds, one loop timer per slot rather than
# per request: a timer each cost about a third of the event loop's time per request under
# load, and a 504 that is at most 10 ms late is as good as a punctual one.
_DEADLINE_SLOT_S = 0.01
# What makes requests concatenable: per input (sorted by name), its dtype and trailing shape.
_Signature = tuple[tuple[str, np.dtype[Any], tuple[int, ...]], ...]


@dataclass(frozen=True)
class BatchConfig:
    """How one deployment's requests are batched."""

    max_batch_size: int = defaults.MAX_BATCH_SIZE
    """Rows per batch; a request with more rows than this runs alone."""
    max_batch_delay_ms: float = defaults.MAX_BATCH_DELAY_MS
    """Longest a batch waits for more rows after its oldest request arrived, while another
    batch computes; it waits only while that pays (see :mod:`modelyard.serving.release`),
    and with every worker idle it leaves at once."""
    max_queue: int = defaults.MAX_QUEUE
    """Rows that may wait for compute; a request that would exceed it is answered 429. A
    single request is always accepted into an empty queue, however many rows it has."""
    timeout_ms: float = defaults.TIMEOUT_MS
    """Deadline of a request submitted without one."""
    workers: int = defaults.REPLICAS
    """Batches computed at once (model replicas sharing the process)."""

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_queue", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"BatchConfig.{name} must be at least 1")
        if not self.max_batch_delay_ms >= 0:
            raise ValueError("BatchConfig.max_batch_delay_ms must be 0 or more")
        if not self.timeout_ms > 0:
            raise ValueError("BatchConfig.timeout_ms must be more than 0")


class BatchObserver(Protocol):
    """Receives a batcher's events, on the event loop thread (the serving layer's metrics)."""

    def on_batch(
        self, size: int, reason: str, queue_s: float, compute_s: float, failed: int
    ) -> None:
        """A batch of ``size`` rows was computed, successfully or not.

        ``reason`` is ``"full"``, ``"cost"``, ``"delay"`` or ``"idle"``, ``queue_s`` how long its
        oldest request waited for compute, ``compute_s`` how long the worker took and
        ``failed`` how many of its rows got an error instead of outputs (all of them when
        ``infer`` failed, those of the requests at fault when it refused invalid input).
        """

    def on_reject(self) -> None:
        """A request was turned away because the queue was full (429)."""

    def on_expire(self) -> None:
        """A request's deadline passed before it was answered (504)."""

    def on_error(self) -> None:
        """A batch failed: some or all of its requests got an error."""


class BatchQueue(Protocol):
    """What serving asks of a version's batcher: a :class:`Batcher` in this process, or a
    handle on one in a separate model process (``serving/split.py``)."""

    async def submit(
        self, inputs: dict[str, np.ndarray], *, deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        """One request's rows of every output (see :meth:`Batcher.submit`)."""
        ...

    async def stop(self, drain: bool = True) -> None:
        """Stop taking requests; with ``drain``, finish the queued ones first."""
        ...


@dataclass
class BatchStats:
    """Running totals of one batcher, updated on the event loop thread."""

    requests: int = 0
    """Requests accepted into the queue."""
    batches: int = 0
    """Batches computed, failed ones included."""
    rows: int = 0
    """Rows computed, failed ones included."""
    failed_rows: int = 0
    """Rows that got an error instead of outputs."""
    batch_sizes: Counter[int] = field(default_factory=Counter)
    """Batches by their number of rows."""
    releases: Counter[str] = field(default_factory=Counter)
    """Batches by why they were released: ``"full"``, ``"cost"``, ``"delay"`` or ``"idle"``."""
    queue_seconds: float = 0.0
    """Sum over batches of how long the batch's oldest request waited for compute."""
    compute_seconds: float = 0.0
    """Sum over batches of the worker's time."""
    queue_depth: int = 0
    """Rows waiting for compute now."""
    rejected: int = 0
    """Requests answered 429 because the queue was full."""
    expired: int = 0
    """Requests answered 504 because their deadline passed."""
    cancelled: int = 0
    """Requests dropped before compute because their caller went away."""
    errors: int = 0
    """Batches with failed rows: ``infer`` failed, refused a request's input, or returned
    outputs without the batch's rows."""


class _Group:
    """Queued requests that can share a batch, and their rows still waiting."""

    __slots__ = ("requests", "rows")

    def __init__(self) -> None:
        self.requests: deque[_Request] = deque()
        self.rows = 0


class _Request:
    __slots__ = ("arrived", "deadline", "future", "group", "inputs", "queued", "rows")

    def __init__(
        self,
        inputs: Arrays,
        rows: int,
        future: asyncio.Future[Arrays],
        group: _Group,
        arrived: float,
        deadline: float,
    ) -> None:
        self.inputs = inputs
        self.rows = rows
        self.future = future
        self.group = group
        self.arrived = arrived
        self.deadline = deadline
        self.queued = True


class _Batch:
    __slots__ = ("compute_s", "failed", "outcomes", "queue_s", "reason", "requests", "rows")

    def __init__(self, requests: list[_Request], rows: int, reason: str, queue_s: float) -> None:
        self.requests = requests
        self.rows = rows
        self.reason = reason
        self.queue_s = queue_s
        self.compute_s = 0.0
        self.outcomes: list[Arrays | ModelyardError] = []
        """Per request, in order: its outputs or its error."""
        self.failed = 0
        """Rows whose request got an error."""


class Batcher:
    """Batches one deployment's requests and runs them on ``config.workers`` threads.

    ``infer`` must be thread-safe when ``workers > 1``. Use it from one event loop, as an
    async context manager or between :meth:`start` and :meth:`stop`. ``release`` decides how
    long a batch collects rows while another computes (by default a
    :class:`~modelyard.serving.release.ReleasePolicy` for ``config``).
    """

    def __init__(
        self,
        infer: InferFn,
        config: BatchConfig,
        *,
        name: str = "",
        observer: BatchObserver | None = None,
        release: ReleasePolicy | None = None,
    ) -> None:
        self.infer = infer
        self.config = config
        self.name = name
        self.observer = observer
        self.stats = BatchStats()
        self._label = f"'{name}'" if name else "the model"
        self._groups: dict[_Signature, _Group] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batches: SimpleQueue[_Batch | None] = SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._task: asyncio.Task[None] | None = None
        self._busy = 0
        self._wake: asyncio.Future[None] | None = None
        self._collecting = False
        self._closing = False
        self._deadlines: dict[int, set[_Request]] = {}
        self._deadline_timers: dict[int, asyncio.TimerHandle] = {}
        self._policy = release or ReleasePolicy(
            config.max_batch_size, config.max_batch_delay_ms / 1000
        )

    @property
    def queue_depth(self) -> int:
        """Rows accepted and not yet handed to a worker."""
        return self.stats.queue_depth

    async def start(self) -> None:
        """Start the controller task and the worker threads."""
        if self._task is not None:
            raise RuntimeError(f"the batcher of {self._label} was already started")
        self._loop = asyncio.get_running_loop()
        prefix = f"batcher-{self.name}" if self.name else "batcher"
        # Plain threads on a SimpleQueue: a ThreadPoolExecutor's submit (a future, a lock, a
        # look at its thread count) cost more than the hand-over itself, once per batch.
        self._workers = [
            threading.Thread(target=self._work, name=f"{prefix}_{index}", daemon=True)
            for index in range(self.config.workers)
        ]
        for worker in self._workers:
            worker.start()
        self._task = self._loop.create_task(self._control(), name=prefix)

    async def stop(self, drain: bool = True) -> None:
        """Stop accepting requests, finish or fail the queued ones, and end the workers.

        With ``drain`` the queued requests are computed (without waiting out the batch
        delay); without it they fail with :class:`Unavailable`. Batches already computing
        finish either way. New submits fail with :class:`Unavailable` from the start.
        """
        if self._task is None:
            return
        self._closing = True
        if not drain:
            self._fail_queued(Unavailable(f"{self._label} is shutting down"))
        self._poke()
        # Shielded so that a caller cancelled mid-stop does not cancel the controller and
        # leave batches half delivered; a controller that failed was logged when it failed.
        with contextlib.suppress(Exception):
            await asyncio.shield(self._task)
        for _ in self._workers:
            self._batches.put(None)
        for worker in self._workers:
            worker.join()
        for timer in self._deadline_timers.values():
            timer.cancel()
        self._deadline_timers.clear()
        self._deadlines.clear()

    async def __aenter__(self) -> Batcher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop(drain=True)

    async def submit(
        self, inputs: dict[str, np.ndarray], *, deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        """Queue one request and return its rows of every output.

        Every input has the same leading batch dimension ``n >= 1``. ``deadline`` is an
        absolute :func:`time.monotonic` time; without one, ``config.timeout_ms`` from now.
        The returned arrays are views into the batch's outputs.

        Raises :class:`InvalidInput` for malformed inputs, :class:`TooManyRequests` (with
        ``retry_after``) when the queue is full, :class:`DeadlineExceeded` when the deadline
        passes first, :class:`Unavailable` when the batcher is not running, and the batch's
        error when its ``infer`` fails (a :class:`ModelyardError`; other exceptions arrive
        wrapped in one, with the original as ``__cause__``).
        """
        loop = self._loop
        if loop is None or self._closing:
            raise Unavailable(f"{self._label} is not accepting requests")
        rows, signature = _rows_and_signature(inputs)
        now = time.monotonic()
        if deadline is None:
            deadline = now + self.config.timeout_ms / 1000
        elif deadline <= now:
            self._count_expired()
            raise DeadlineExceeded(f"the request's deadline passed before {self._label} got it")
        stats = self.stats
        if stats.queue_depth and stats.queue_depth + rows > self.config.max_queue:
            stats.rejected += 1
            if self.observer is not None:
                _guarded(self.observer.on_reject)
            raise TooManyRequests(
                f"{self._label} has {stats.queue_depth} rows waiting (at most "
                f"{self.config.max_queue}); retry shortly",
                retry_after=1,
            )
        group = self._groups.get(signature)
        if group is None:
            group = self._groups[signature] = _Group()
        request = _Request(inputs, rows, loop.create_future(), group, now, deadline)
        group.requests.append(request)
        group.rows += rows
        stats.queue_depth += rows
        stats.requests += 1
        self._policy.arrived(now, rows)
        # The controller only needs waking for a first request or a group that just filled;
        # every other arrival is picked up when its delay ends or a worker frees up.
        if self._collecting and (
            stats.queue_depth == rows or group.rows >= self.config.max_batch_size
        ):
            self._poke()
        slot = math.ceil(deadline / _DEADLINE_SLOT_S)
        watched = self._deadlines.get(slot)
        if watched is None:
            watched = self._deadlines[slot] = set()
            self._deadline_timers[slot] = loop.call_later(
                slot * _DEADLINE_SLOT_S - now, self._expire_slot, slot
            )
        watched.add(request)
        try:
            return await request.future
        except asyncio.CancelledError:
            if self._unqueue(request):
                request.inputs = {}
                self.stats.cancelled += 1
            raise
        finally:
            watched.discard(request)

    # -- controller (event loop) ------------------------------------------------------

    async def _control(self) -> None:
        try:
            while True:
                if self._busy >= self.config.workers:
                    await self._sleep(math.inf, collecting=False)
                    continue
                now = time.monotonic()
                group, reason, wait = self._pick(now)
                if group is None:
                    if self._closing:
                        break
                    await self._sleep(wait, collecting=True)
                    continue
                batch = self._take(group, now, reason)
                if batch is not None:
                    self._busy += 1
                    self._batches.put(batch)
            while self._busy:
                await self._sleep(math.inf, collecting=False)
        except asyncio.CancelledError:
            self._closing = True
            self._fail_queued(Unavailable(f"{self._label} was shut down"))
            raise
        except Exception:
            log.exception("the batcher of %s stopped unexpectedly", self._label)
            self._closing = True
            self._fail_queued(Unavailable(f"{self._label} stopped unexpectedly"))
            raise

    def _pick(self, now: float) -> tuple[_Group | None, str, float]:
        """The group to release now and why, or None and how long to keep collecting."""
        oldest: _Group | None = None
        full: _Group | None = None
        limit = self.config.max_batch_size
        for signature, group in list(self._groups.items()):
            requests = group.requests
            while requests and not requests[0].queued:
                requests.popleft()
            if not requests:
                del self._groups[signature]
                continue
            if oldest is None or requests[0].arrived < oldest.requests[0].arrived:
                oldest = group
            if full is None and group.rows >= limit:
                full = group
        if oldest is None:
            return None, "", math.inf
        if oldest.rows >= limit or self._closing or self._busy == 0:
            return oldest, DELAY, 0.0
        arrived = oldest.requests[0].arrived
        hold = self._policy.hold(now, oldest.rows, arrived)
        if hold <= 0:
            due = now >= arrived + self.config.max_batch_delay_ms / 1000
            return oldest, DELAY if due else COST, 0.0
        if full is not None:
            return full, FULL, 0.0
        return None, "", hold

    def _take(self, group: _Group, now: float, reason: str) -> _Batch | None:
        """Up to ``max_batch_size`` rows of ``group``'s live requests, oldest first; the
        batch is released as ``reason`` unless it is full or no batch computes."""
        limit = self.config.max_batch_size
        requests = group.requests
        batch: list[_Request] = []
        rows = 0
        while requests and rows < limit:
            request = requests[0]
            if not request.queued:
                requests.popleft()
                continue
            if request.deadline <= now:
                requests.popleft()
                self._expire(request)
                continue
            if batch and rows + request.rows > limit:
                break
            requests.popleft()
            self._unqueue(request)
            batch.append(request)
            rows += request.rows
        if not batch:
            return None
        if rows >= limit or requests:
            reason = FULL
        elif self._busy == 0:
            reason = IDLE
        return _Batch(batch, rows, reason, now - batch[0].arrived)

    async def _sleep(self, timeout: float, *, collecting: bool) -> None:
        assert self._loop is not None
        self._wake = wake = self._loop.create_future()
        self._collecting = collecting
        timer = None if math.isinf(timeout) else self._loop.call_later(timeout, self._poke)
        try:
            await wake
        finally:
            self._wake = None
            self._collecting = False
            if timer is not None:
                timer.cancel()

    def _poke(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _unqueue(self, request: _Request) -> bool:
        """Take ``request``'s rows off the queue counts; False if they already were."""
        if not request.queued:
            return False
        request.queued = False
        request.group.rows -= request.rows
        self.stats.queue_depth -= request.rows
        return True

    def _expire_slot(self, slot: int) -> None:
        del self._deadline_timers[slot]
        for request in self._deadlines.pop(slot):
            self._expire(request)

    def _expire(self, request: _Request) -> None:
        if request.future.done():
            return
        request.future.set_exception(
            DeadlineExceeded(f"{self._label} did not answer before the request's deadline")
        )
        if self._unqueue(request):
            request.inputs = {}  # it stays in its group's deque until the controller passes
        self._count_expired()

    def _count_expired(self) -> None:
        self.stats.expired += 1
        if self.observer is not None:
            _guarded(self.observer.on_expire)

    def _fail_queued(self, error: ModelyardError) -> None:
        for group in self._groups.values():
            for request in group.requests:
                if self._unqueue(request) and not request.future.done():
                    request.future.set_exception(error)
                request.inputs = {}
        self._groups.clear()

    # -- workers ----------------------------------------------------------------------

    def _work(self) -> None:
        batches = self._batches
        while (batch := batches.get()) is not None:
            self._compute(batch)

    def _compute(self, batch: _Batch) -> None:
        """Run one batch on a worker thread and hand the outcome back to the loop."""
        started = time.perf_counter()
        requests = batch.requests
        try:
            batch.outcomes = list(self._run(requests, batch.rows))
        except InvalidInput as exc:
            if len(requests) == 1:
                batch.outcomes = [exc]
            else:
                # One request's values (a NaN, an integer out of range) refuse the whole
                # batch: the others must not pay for them.
                batch.outcomes = [self._run_alone(request) for request in requests]
        except ModelyardError as exc:
            batch.outcomes = [exc] * len(requests)
        batch.failed = sum(
            request.rows
            for request, outcome in zip(requests, batch.outcomes, strict=True)
            if isinstance(outcome, ModelyardError)
        )
        batch.compute_s = time.perf_counter() - started
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._finish, batch)

    def _run(self, requests: list[_Request], rows: int) -> list[Arrays]:
        """The outputs of each request, computed together; raises a ModelyardError."""
        try:
            outputs = self.infer(_concatenate(requests))
        except ModelyardError:
            raise
        except Exception as exc:
            log.error("a batch of %d rows failed in %s", rows, self._label, exc_info=exc)
            error = ModelyardError(f"{self._label} failed: {type(exc).__name__}: {exc}")
            raise error from exc
        return _split(outputs, requests, rows, self._label)

    def _run_alone(self, request: _Request) -> Arrays | ModelyardError:
        try:
            return self._run([request], request.rows)[0]
        except ModelyardError as exc:
            return exc

    def _finish(self, batch: _Batch) -> None:
        self._busy -= 1
        self._poke()
        for request, outcome in zip(batch.requests, batch.outcomes, strict=True):
            if request.future.done():
                continue
            if isinstance(outcome, ModelyardError):
                request.future.set_exception(outcome)
            else:
                request.future.set_result(outcome)
        if not batch.failed:
            self._policy.computed(batch.rows, batch.compute_s)
        stats = self.stats
        stats.batches += 1
        stats.rows += batch.rows
        stats.failed_rows += batch.failed
        stats.batch_sizes[batch.rows] += 1
        stats.releases[batch.reason] += 1
        stats.queue_seconds += batch.queue_s
        stats.compute_seconds += batch.compute_s
        if batch.failed:
            stats.errors += 1
        observer = self.observer
        if observer is not None:
            _guarded(
                observer.on_batch,
                batch.rows,
                batch.reason,
                batch.queue_s,
                batch.compute_s,
                batch.failed,
            )
            if batch.failed:
                _guarded(observer.on_error)


def _rows_and_signature(inputs: Arrays) -> tuple[int, _Signature]:
    if not isinstance(inputs, dict) or not inputs:
        raise InvalidInput("a request needs at least one named input array")
    rows = -1
    parts: list[tuple[str, np.dtype[Any], tuple[int, ...]]] = []
    for name, value in inputs.items():
        if not isinstance(value, np.ndarray) or value.ndim == 0:
            raise InvalidInput(f"input '{name}' must be an array with a leading batch dimension")
        if rows < 0:
            rows = value.shape[0]
        elif value.shape[0] != rows:
            raise InvalidInput(
                f"inputs disagree on the batch dimension: '{name}' has {value.shape[0]} rows, "
                f"'{parts[0][0]}' has {rows}"
            )
        parts.append((name, value.dtype, value.shape[1:]))
    if rows < 1:
        raise InvalidInput("a request needs at least one row")
    if len(parts) > 1:
        parts.sort(key=itemgetter(0))
    return rows, tuple(parts)


def _concatenate(requests: list[_Request]) -> Arrays:
    if len(requests) == 1:
        return requests[0].inputs
    return {
        name: np.concatenate([request.inputs[name] for request in requests])
        for name in requests[0].inputs
    }


def _split(outputs: Arrays, requests: list[_Request], rows: int, label: str) -> list[Arrays]:
    if not isinstance(outputs, dict):
        raise ModelyardError(f"{label} returned {type(outputs).__name__}, not named arrays")
    for name, value in outputs.items():
        if not isinstance(value, np.ndarray) or value.ndim == 0 or value.shape[0] != rows:
            got = f"shape {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
            raise ModelyardError(
                f"{label} returned output '{name}' with {got} for a batch of {rows} rows; "
                "every output must keep the batch's rows along axis 0"
            )
    if len(requests) == 1:
        return [outputs]
    results: list[Arrays] = []
    start = 0
    for request in requests:
        end = start + request.rows
        results.append({name: value[start:end] for name, value in outputs.items()})
        start = end
    return results


def _guarded(callback: Callable[..., None], *args: Any) -> None:
    # An observer's bug must not leave requests unanswered or stop the controller.
    try:
        callback(*args)
    except Exception:
        log.exception("batch observer %r failed", callback)


__all__ = ["BatchConfig", "BatchObserver", "BatchQueue", "BatchStats", "Batcher", "InferFn"]
