"""The dynamic batcher: how batches form, where results go, and what fails how."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from modelyard.errors import (
    DeadlineExceeded,
    InvalidInput,
    ModelyardError,
    TooManyRequests,
    Unavailable,
)
from modelyard.serving.batcher import BatchConfig, Batcher
from modelyard.serving.release import ReleasePolicy

# A batch delay no test waits out: batches in such tests are released by size or by stop().
FOREVER_MS = 600_000.0


def rows(value: float, n: int = 1, width: int = 3, dtype: Any = np.float32) -> np.ndarray:
    """``n`` rows of ``value``; the first column carries ``value + k/100`` to tell rows apart."""
    x = np.full((n, width), value, dtype=dtype)
    x[:, 0] = value + np.arange(n) / 100
    return x


def expected(x: np.ndarray) -> np.ndarray:
    return x * 2 + 1


class Model:
    """A thread-safe infer fn, y = 2x + 1, that records what each batch held.

    ``gate`` (closed) holds every batch in the worker until the test opens it, so a test can
    fill the queue behind a batch that is computing.
    """

    def __init__(self, *, gated: bool = False, fail_below: float | None = None) -> None:
        self.batches: list[list[float]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.fail_below = fail_below
        self._lock = threading.Lock()

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        with self._lock:
            self.batches.append(x[:, 0].tolist())
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        if self.fail_below is not None and (x < self.fail_below).any():
            raise ValueError("negative rows are not allowed")
        return {"y": expected(x), "total": x.sum(axis=1)}

    @property
    def sizes(self) -> list[int]:
        return [len(b) for b in self.batches]

    @property
    def seen(self) -> set[float]:
        return {v for b in self.batches for v in b}


class Events:
    """A BatchObserver that writes down what it is told."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, str, float, float]] = []
        self.failed: list[int] = []
        self.rejects = self.expires = self.errors = 0

    def on_batch(
        self, size: int, reason: str, queue_s: float, compute_s: float, failed: int
    ) -> None:
        self.batches.append((size, reason, queue_s, compute_s))
        self.failed.append(failed)

    def on_reject(self) -> None:
        self.rejects += 1

    def on_expire(self) -> None:
        self.expires += 1

    def on_error(self) -> None:
        self.errors += 1


def check(result: dict[str, np.ndarray], x: np.ndarray) -> None:
    np.testing.assert_array_equal(result["y"], expected(x))
    np.testing.assert_array_equal(result["total"], x.sum(axis=1))


async def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


@contextlib.contextmanager
def opened_at_exit(model: Model) -> Iterator[Model]:
    """Open a gated model's gate however the test ends, so no worker stays blocked."""
    try:
        yield model
    finally:
        model.gate.set()


@pytest.mark.asyncio
async def test_batches_fill_up_to_max_batch_size() -> None:
    model = Model()
    config = BatchConfig(max_batch_size=4, max_batch_delay_ms=FOREVER_MS)
    async with Batcher(model, config) as batcher, asyncio.timeout(10):
        inputs = [rows(i) for i in range(8)]
        results = await asyncio.gather(*(batcher.submit({"x": x}) for x in inputs))
    assert model.sizes == [4, 4]
    assert batcher.stats.releases == {"full": 2}
    for result, x in zip(results, inputs, strict=True):
        check(result, x)


@pytest.mark.asyncio
async def test_with_every_worker_idle_a_batch_leaves_at_once() -> None:
    model = Model()
    events = Events()
    # A delay no test could wait out: the requests are answered because nothing computes.
    config = BatchConfig(max_batch_size=100, max_batch_delay_ms=FOREVER_MS)
    async with Batcher(model, config, observer=events) as batcher, asyncio.timeout(10):
        await asyncio.gather(*(batcher.submit({"x": rows(i)}) for i in range(3)))
        await batcher.submit({"x": rows(3)})
    assert model.sizes == [3, 1]
    assert batcher.stats.releases == {"idle": 2}
    assert [(size, reason) for size, reason, _, _ in events.batches] == [(3, "idle"), (1, "idle")]
    assert all(queue_s >= 0 and compute_s >= 0 for _, _, queue_s, compute_s in events.batches)


def costly_batches(config: BatchConfig) -> ReleasePolicy:
    """A release policy that has seen batches cost 1 s whatever their size: waiting pays."""
    release = ReleasePolicy(config.max_batch_size, config.max_batch_delay_ms / 1000)
    for size in (1, 10, 1, 10):
        release.computed(size, 1.0)
    return release


@pytest.mark.asyncio
async def test_while_a_batch_computes_the_next_waits_while_it_pays_up_to_the_delay() -> None:
    model = Model(gated=True)
    events = Events()
    config = BatchConfig(max_batch_size=100, max_batch_delay_ms=20, workers=2)
    release = costly_batches(config)
    async with (
        Batcher(model, config, observer=events, release=release) as batcher,
        asyncio.timeout(10),
    ):
        with opened_at_exit(model):
            first = asyncio.ensure_future(batcher.submit({"x": rows(0)}))
            await asyncio.to_thread(model.entered.wait, 10)
            # One worker is busy, one free, and a batch costs far more than the wait for the
            # next request: these three wait out the delay together.
            later = [asyncio.ensure_future(batcher.submit({"x": rows(i)})) for i in (1, 2, 3)]
            await eventually(lambda: len(model.batches) == 2)
            model.gate.set()
            await asyncio.gather(first, *later)
    assert model.sizes == [1, 3]
    assert sorted((size, reason) for size, reason, _, _ in events.batches) == [
        (1, "idle"),
        (3, "delay"),
    ]


@pytest.mark.asyncio
async def test_while_a_batch_computes_the_next_leaves_at_once_when_waiting_does_not_pay() -> None:
    model = Model(gated=True)
    events = Events()
    # Nothing has shown that batches cost more than their rows: no wait pays, however long
    # the delay allows.
    config = BatchConfig(max_batch_size=100, max_batch_delay_ms=FOREVER_MS, workers=2)
    async with Batcher(model, config, observer=events) as batcher, asyncio.timeout(10):
        with opened_at_exit(model):
            first = asyncio.ensure_future(batcher.submit({"x": rows(0)}))
            await asyncio.to_thread(model.entered.wait, 10)
            second = asyncio.ensure_future(batcher.submit({"x": rows(1)}))
            await eventually(lambda: len(model.batches) == 2)
            model.gate.set()
            await asyncio.gather(first, second)
    assert sorted((size, reason) for size, reason, _, _ in events.batches) == [
        (1, "cost"),
        (1, "idle"),
    ]


@pytest.mark.asyncio
async def test_each_request_gets_its_own_rows_back() -> None:
    model = Model()
    rng = random.Random(7)
    inputs = [rows(i, n=rng.randint(1, 3)) for i in range(200)]
    rng.shuffle(inputs)
    config = BatchConfig(max_batch_size=8, max_batch_delay_ms=1)
    async with Batcher(model, config) as batcher, asyncio.timeout(30):
        results = await asyncio.gather(*(batcher.submit({"x": x}) for x in inputs))
    for result, x in zip(results, inputs, strict=True):
        assert result["y"].shape == x.shape
        check(result, x)
    assert max(model.sizes) <= 8
    assert sum(model.sizes) == sum(len(x) for x in inputs)
    assert len(model.sizes) < len(inputs)


@pytest.mark.asyncio
async def test_multi_row_requests_never_overfill_and_big_ones_run_alone() -> None:
    model = Model()
    config = BatchConfig(max_batch_size=4, max_batch_delay_ms=FOREVER_MS, max_queue=100)
    inputs = [rows(10, n=3), rows(20, n=2), rows(30, n=6), rows(40, n=1), rows(50, n=3)]
    async with Batcher(model, config) as batcher, asyncio.timeout(10):
        results = await asyncio.gather(*(batcher.submit({"x": x}) for x in inputs))
    assert model.sizes == [3, 2, 6, 4]
    assert model.batches[2] == inputs[2][:, 0].tolist()
    assert batcher.stats.releases == {"full": 4}
    for result, x in zip(results, inputs, strict=True):
        check(result, x)


@pytest.mark.asyncio
async def test_a_full_queue_answers_429_at_once() -> None:
    model = Model(gated=True)
    events = Events()
    config = BatchConfig(max_batch_size=1, max_batch_delay_ms=0, max_queue=4)
    with opened_at_exit(model):
        async with Batcher(model, config, observer=events) as batcher, asyncio.timeout(10):
            computing = asyncio.create_task(batcher.submit({"x": rows(0)}))
            await eventually(model.entered.is_set)
            queued = [asyncio.create_task(batcher.submit({"x": rows(i)})) for i in (1, 2, 3)]
            await eventually(lambda: batcher.queue_depth == 3)
            with pytest.raises(TooManyRequests) as info:
                await batcher.submit({"x": rows(9, n=2)})
            assert info.value.status == 429
            assert info.value.extra["retry_after"] == 1
            queued.append(asyncio.create_task(batcher.submit({"x": rows(4)})))
            await eventually(lambda: batcher.queue_depth == 4)
            with pytest.raises(TooManyRequests):
                await batcher.submit({"x": rows(5)})
            model.gate.set()
            check(await computing, rows(0))
            for i, task in enumerate(queued, start=1):
                check(await task, rows(i))
    assert batcher.stats.rejected == events.rejects == 2
    assert 5 not in model.seen and 9 not in model.seen


@pytest.mark.asyncio
async def test_an_empty_queue_takes_one_request_of_any_size() -> None:
    model = Model()
    config = BatchConfig(max_batch_size=4, max_batch_delay_ms=0, max_queue=2)
    async with Batcher(model, config) as batcher, asyncio.timeout(10):
        x = rows(1, n=10)
        check(await batcher.submit({"x": x}), x)
    assert model.sizes == [10]


@pytest.mark.asyncio
async def test_a_passed_deadline_answers_504_and_is_never_computed() -> None:
    model = Model(gated=True)
    events = Events()
    config = BatchConfig(max_batch_size=1, max_batch_delay_ms=0)
    with opened_at_exit(model):
        async with Batcher(model, config, observer=events) as batcher, asyncio.timeout(10):
            computing = asyncio.create_task(batcher.submit({"x": rows(0)}))
            await eventually(model.entered.is_set)
            with pytest.raises(DeadlineExceeded) as info:
                await batcher.submit({"x": rows(1)}, deadline=time.monotonic() + 0.05)
            assert info.value.status == 504
            assert batcher.queue_depth == 0
            with pytest.raises(DeadlineExceeded):
                await batcher.submit({"x": rows(2)}, deadline=time.monotonic() - 1)
            model.gate.set()
            check(await computing, rows(0))
            check(await batcher.submit({"x": rows(3)}), rows(3))
    assert model.seen == {0, 3}
    assert batcher.stats.expired == events.expires == 2
    assert batcher.stats.requests == 3


@pytest.mark.asyncio
async def test_the_default_timeout_applies_to_requests_without_a_deadline() -> None:
    model = Model(gated=True)
    config = BatchConfig(max_batch_size=1, max_batch_delay_ms=0, timeout_ms=50)
    with opened_at_exit(model):
        async with Batcher(model, config) as batcher, asyncio.timeout(10):
            holder = asyncio.create_task(
                batcher.submit({"x": rows(0)}, deadline=time.monotonic() + 10)
            )
            await eventually(model.entered.is_set)
            with pytest.raises(DeadlineExceeded):
                await batcher.submit({"x": rows(1)})
            model.gate.set()
            check(await holder, rows(0))
    assert model.seen == {0}
    assert batcher.stats.expired == 1


@pytest.mark.asyncio
async def test_a_deadline_that_passes_during_compute_answers_504() -> None:
    model = Model(gated=True)
    config = BatchConfig(max_batch_size=1, max_batch_delay_ms=0)
    with opened_at_exit(model):
        async with Batcher(model, config) as batcher, asyncio.timeout(10):
            late = asyncio.create_task(
                batcher.submit({"x": rows(0)}, deadline=time.monotonic() + 0.5)
            )
            await eventually(model.entered.is_set)
            with pytest.raises(DeadlineExceeded):
                await late
            model.gate.set()
            check(await batcher.submit({"x": rows(1)}), rows(1))
    assert model.seen == {0, 1}
    assert batcher.stats.expired == 1
    assert batcher.stats.batches == 2


@pytest.mark.asyncio
async def test_a_cancelled_request_is_never_computed() -> None:
    model = Model(gated=True)
    config = BatchConfig(max_batch_size=1, max_batch_delay_ms=0)
    with opened_at_exit(model):
        async with Batcher(model, config) as batcher, asyncio.timeout(10):
            computing = asyncio.create_task(batcher.submit({"x": rows(0)}))
            await eventually(model.entered.is_set)
            gone = asyncio.create_task(batcher.submit({"x": rows(1, n=2)}))
            await eventually(lambda: batcher.queue_depth == 2)
            gone.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gone
            assert batcher.queue_depth == 0
            model.gate.set()
            check(await computing, rows(0))
            check(await batcher.submit({"x": rows(2)}), rows(2))
    assert model.seen == {0, 2}
    assert batcher.stats.cancelled == 1


@pytest.mark.asyncio
async def test_a_failing_batch_fails_exactly_its_requests() -> None:
    model = Model(fail_below=0)
    events = Events()
    config = BatchConfig(max_batch_size=2, max_batch_delay_ms=FOREVER_MS)
    inputs = [rows(-1), rows(1), rows(2), rows(3)]
    async with Batcher(model, config, observer=events) as batcher, asyncio.timeout(10):
        results = await asyncio.gather(
            *(batcher.submit({"x": x}) for x in inputs), return_exceptions=True
        )
        after = await asyncio.gather(*(batcher.submit({"x": rows(i)}) for i in (4, 5)))
    assert model.sizes == [2, 2, 2]
    for failed in results[:2]:
        assert type(failed) is ModelyardError
        assert failed.status == 500
        assert isinstance(failed.__cause__, ValueError)
        assert "negative rows" in failed.detail
    for result, x in zip(results[2:], inputs[2:], strict=True):
        assert isinstance(result, dict)
        check(result, x)
    for result, i in zip(after, (4, 5), strict=True):
        check(result, rows(i))
    assert batcher.stats.errors == events.errors == 1
    assert batcher.stats.batches == len(events.batches) == 3


@pytest.mark.asyncio
async def test_modelyard_errors_from_infer_pass_through_as_they_are() -> None:
    def infer(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise Unavailable("the GPU is gone")

    config = BatchConfig(max_batch_size=2, max_batch_delay_ms=FOREVER_MS)
    async with Batcher(infer, config) as batcher, asyncio.timeout(10):
        results = await asyncio.gather(
            *(batcher.submit({"x": rows(i)}) for i in range(2)), return_exceptions=True
        )
    assert isinstance(results[0], Unavailable)
    assert results[0] is results[1]


@pytest.mark.asyncio
async def test_a_batch_refused_as_invalid_input_fails_only_the_requests_at_fault() -> None:
    calls: list[int] = []

    def infer(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        calls.append(len(x))
        if (x < 0).any():
            raise InvalidInput(f"input 'x': row {int(np.argmax((x < 0).any(axis=1)))} is negative")
        return {"y": expected(x), "total": x.sum(axis=1)}

    events = Events()
    config = BatchConfig(max_batch_size=4, max_batch_delay_ms=FOREVER_MS)
    inputs = [rows(1), rows(-2, n=2), rows(3)]
    async with Batcher(infer, config, observer=events) as batcher, asyncio.timeout(10):
        results = await asyncio.gather(
            *(batcher.submit({"x": x}) for x in inputs), return_exceptions=True
        )
    assert isinstance(results[1], InvalidInput) and "row 0 is negative" in results[1].detail
    for index in (0, 2):
        assert isinstance(results[index], dict)
        check(results[index], inputs[index])
    # The batch of four rows was refused, then each request ran alone.
    assert calls == [4, 1, 2, 1]
    assert events.failed == [2] and events.errors == 1
    assert batcher.stats.failed_rows == 2 and batcher.stats.rows == 4


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (lambda x: {"y": x[:-1]}, "with shape (1, 3) for a batch of 2 rows"),
        (lambda x: {"y": np.float32(1.0)}, "for a batch of 2 rows"),
        (lambda x: [x], "returned list"),
    ],
)
@pytest.mark.asyncio
async def test_outputs_without_the_batch_rows_fail_the_batch(
    outputs: Callable[[np.ndarray], Any], message: str
) -> None:
    config = BatchConfig(max_batch_size=2, max_batch_delay_ms=FOREVER_MS)
    async with Batcher(lambda d: outputs(d["x"]), config) as batcher, asyncio.timeout(10):
        results = await asyncio.gather(
            *(batcher.submit({"x": rows(i)}) for i in range(2)), return_exceptions=True
        )
    for failed in results:
        assert type(failed) is ModelyardError
        assert message in failed.detail


@pytest.mark.asyncio
async def test_requests_of_different_shapes_or_dtypes_are_not_mixed() -> None:
    seen: list[tuple[str, tuple[int, ...], int]] = []

    def infer(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        seen.append((x.dtype.str, x.shape[1:], len(x)))
        return {"y": expected(x), "total": x.sum(axis=1)}

    kinds: list[dict[str, Any]] = [
        {"width": 3, "dtype": np.float32},
        {"width": 4, "dtype": np.float32},
        {"width": 3, "dtype": np.float64},
    ]
    inputs = [rows(i, **kinds[i % 3]) for i in range(30)]
    config = BatchConfig(max_batch_size=100, max_batch_delay_ms=10)
    async with Batcher(infer, config) as batcher, asyncio.timeout(10):
        results = await asyncio.gather(*(batcher.submit({"x": x}) for x in inputs))
    assert sorted(seen) == [("<f4", (3,), 10), ("<f4", (4,), 10), ("<f8", (3,), 10)]
    for result, x in zip(results, inputs, strict=True):
        assert result["y"].dtype == x.dtype
        check(result, x)


@pytest.mark.asyncio
async def test_inputs_named_in_any_order_share_a_batch() -> None:
    sizes: list[int] = []

    def infer(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sizes.append(len(inputs["a"]))
        return {"sum": inputs["a"] + inputs["b"]}

    a, b = np.arange(4.0).reshape(4, 1), np.arange(4.0, 8.0).reshape(4, 1)
    config = BatchConfig(max_batch_size=4, max_batch_delay_ms=FOREVER_MS)
    async with Batcher(infer, config) as batcher, asyncio.timeout(10):
        results = await asyncio.gather(
            batcher.submit({"a": a[:2], "b": b[:2]}), batcher.submit({"b": b[2:], "a": a[2:]})
        )
    assert sizes == [4]
    np.testing.assert_array_equal(results[0]["sum"], (a + b)[:2])
    np.testing.assert_array_equal(results[1]["sum"], (a + b)[2:])


@pytest.mark.asyncio
async def test_stop_with_drain_completes_queued_work_without_waiting_the_delay() -> None:
    model = Model(gated=True)
    config = BatchConfig(max_batch_size=100, max_batch_delay_ms=FOREVER_MS, workers=2)
    batcher = Batcher(model, config, release=costly_batches(config))
    await batcher.start()
    with opened_at_exit(model):
        async with asyncio.timeout(10):
            # One batch computes, so the five behind it wait for the delay (forever)...
            first = asyncio.create_task(batcher.submit({"x": rows(100)}))
            await asyncio.to_thread(model.entered.wait, 10)
            inputs = [rows(i) for i in range(5)]
            tasks = [asyncio.create_task(batcher.submit({"x": x})) for x in inputs]
            await eventually(lambda: batcher.queue_depth == 5)
            # ...until stop: they leave at once, to the free worker.
            stopping = asyncio.create_task(batcher.stop(drain=True))
            await eventually(lambda: len(model.batches) == 2)
            model.gate.set()
            await stopping
            check(first.result(), rows(100))
            for task, x in zip(tasks, inputs, strict=True):
                check(task.result(), x)
            with pytest.raises(Unavailable):
                await batcher.submit({"x": rows(9)})
    assert model.sizes == [1, 5]


@pytest.mark.asyncio
async def test_stop_without_drain_fails_queued_work_and_finishes_running_work() -> None:
    model = Model(gated=True)
    batcher = Batcher(model, BatchConfig(max_batch_size=1, max_batch_delay_ms=0))
    await batcher.start()
    with opened_at_exit(model):
        async with asyncio.timeout(10):
            computing = asyncio.create_task(batcher.submit({"x": rows(0)}))
            await eventually(model.entered.is_set)
            queued = [asyncio.create_task(batcher.submit({"x": rows(i)})) for i in (1, 2)]
            await eventually(lambda: batcher.queue_depth == 2)
            stopping = asyncio.create_task(batcher.stop(drain=False))
            for task in queued:
                with pytest.raises(Unavailable):
                    await task
            model.gate.set()
            check(await computing, rows(0))
            await stopping
    assert model.seen == {0}


@pytest.mark.asyncio
async def test_submit_before_start_is_unavailable() -> None:
    batcher = Batcher(Model(), BatchConfig())
    with pytest.raises(Unavailable):
        await batcher.submit({"x": rows(0)})


@pytest.mark.asyncio
async def test_workers_compute_batches_at_the_same_time() -> None:
    both_inside = threading.Barrier(2, timeout=10)

    def infer(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        both_inside.wait()
        return {"y": expected(inputs["x"]), "total": inputs["x"].sum(axis=1)}

    config = BatchConfig(max_batch_size=1, max_batch_delay_ms=0, workers=2)
    async with Batcher(infer, config) as batcher, asyncio.timeout(20):
        results = await asyncio.gather(*(batcher.submit({"x": rows(i)}) for i in (1, 2)))
    for result, i in zip(results, (1, 2), strict=True):
        check(result, rows(i))


@pytest.mark.parametrize(
    "inputs",
    [
        {},
        {"x": np.float32(1.0)},
        {"x": np.zeros((0, 3))},
        {"x": np.zeros((2, 3)), "m": np.zeros((3, 1))},
        {"x": [[1.0, 2.0]]},
    ],
)
@pytest.mark.asyncio
async def test_malformed_requests_are_invalid_input(inputs: dict[str, Any]) -> None:
    async with Batcher(Model(), BatchConfig()) as batcher:
        with pytest.raises(InvalidInput):
            await batcher.submit(inputs)
        assert batcher.queue_depth == 0


@pytest.mark.parametrize(
    "field",
    [
        {"max_batch_size": 0},
        {"max_queue": 0},
        {"workers": 0},
        {"max_batch_delay_ms": -1},
        {"timeout_ms": 0},
    ],
)
def test_nonsense_config_is_refused(field: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(field))):
        BatchConfig(**field)


@pytest.mark.asyncio
async def test_a_broken_observer_does_not_break_serving() -> None:
    class Broken(Events):
        def on_batch(
            self, size: int, reason: str, queue_s: float, compute_s: float, failed: int
        ) -> None:
            raise RuntimeError("metrics backend down")

    config = BatchConfig(max_batch_size=1, max_batch_delay_ms=0)
    async with Batcher(Model(), config, observer=Broken()) as batcher, asyncio.timeout(10):
        check(await batcher.submit({"x": rows(1)}), rows(1))
        check(await batcher.submit({"x": rows(2)}), rows(2))


@pytest.mark.asyncio
async def test_5000_concurrent_requests_all_get_their_answer() -> None:
    def infer(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"] + 1}

    inputs = [np.array([[float(i)]]) for i in range(5000)]
    config = BatchConfig(max_batch_size=64, max_batch_delay_ms=1, max_queue=5000, workers=2)
    async with Batcher(infer, config) as batcher, asyncio.timeout(120):
        started = time.perf_counter()
        results = await asyncio.gather(*(batcher.submit({"x": x}) for x in inputs))
        burst_s = time.perf_counter() - started

        async def client(first: int) -> None:
            for i in range(first, first + 100):
                out = await batcher.submit({"x": inputs[i % 5000]})
                assert out["y"][0, 0] == i % 5000 + 1

        started = time.perf_counter()
        await asyncio.gather(*(client(c * 100) for c in range(64)))
        closed_loop_s = time.perf_counter() - started
    for result, x in zip(results, inputs, strict=True):
        np.testing.assert_array_equal(result["y"], x + 1)
    stats = batcher.stats
    assert stats.rows == stats.requests == 5000 + 6400
    print(
        f"\n5000-request burst: {5000 / burst_s:,.0f} req/s; 64 closed-loop clients: "
        f"{6400 / closed_loop_s:,.0f} req/s; mean batch {stats.rows / stats.batches:.1f} rows"
    )


@pytest.mark.asyncio
async def test_nothing_is_left_running_after_stop() -> None:
    tasks_before = asyncio.all_tasks()
    model = Model()
    config = BatchConfig(max_batch_size=2, max_batch_delay_ms=1, workers=3)
    batcher = Batcher(model, config, name="leakcheck")
    await batcher.start()
    async with asyncio.timeout(10):
        await asyncio.gather(*(batcher.submit({"x": rows(i)}) for i in range(30)))
    assert any(t.name.startswith("batcher-leakcheck") for t in threading.enumerate())
    await batcher.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("batcher-leakcheck")]
    assert asyncio.all_tasks() == tasks_before
