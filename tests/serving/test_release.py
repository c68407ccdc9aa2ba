"""When a batch leaves while another computes: the latency fit and the release decision, on
a clock the tests set (no time passes)."""

from __future__ import annotations

import math

import pytest

from modelyard.serving.release import LatencyFit, ReleasePolicy


def fitted(a: float, b: float, sizes: tuple[int, ...] = (1, 4, 8, 16, 32)) -> LatencyFit:
    fit = LatencyFit()
    for _ in range(3):
        for n in sizes:
            fit.add(n, a * n + b)
    return fit


def test_the_fit_recovers_the_line_the_batches_follow() -> None:
    line = fitted(a=0.0002, b=0.003).line
    assert line is not None
    assert line[0] == pytest.approx(0.0002)
    assert line[1] == pytest.approx(0.003)


def test_the_fit_follows_recent_batches() -> None:
    fit = fitted(a=0.001, b=0.0)
    for _ in range(100):  # the model got faster per row and slower per batch
        for n in (1, 8, 32):
            fit.add(n, 0.0001 * n + 0.005)
    line = fit.line
    assert line is not None
    assert line[0] == pytest.approx(0.0001, rel=1e-3)
    assert line[1] == pytest.approx(0.005, rel=1e-3)


def test_no_line_before_batches_differ_in_size() -> None:
    assert LatencyFit().line is None
    fit = LatencyFit()
    for _ in range(20):
        fit.add(8, 0.004)
    assert fit.line is None


def test_noise_never_makes_a_negative_cost() -> None:
    fit = LatencyFit()
    for n, seconds in [(1, 0.010), (4, 0.001), (1, 0.010), (4, 0.001)]:
        fit.add(n, seconds)
    line = fit.line
    assert line is not None
    assert line == (0.0, pytest.approx(line[1])) and line[1] >= 0


def policy(
    *, a: float, b: float, gap: float, max_batch_size: int = 32, delay_ms: float = 10.0
) -> ReleasePolicy:
    """A policy that has seen batches cost ``a·n + b`` and requests arrive ``gap`` apart,
    the last one at t = 100 s."""
    release = ReleasePolicy(max_batch_size, delay_ms / 1000)
    release.fit = fitted(a, b)
    for k in range(10):
        release.arrived(100.0 - (9 - k) * gap, rows=1)
    return release


def test_a_batch_waits_while_the_rows_it_holds_cost_less_than_a_batch() -> None:
    # A GPU-like model: 4 ms per batch, 10 us per row; a request every 0.5 ms.
    release = policy(a=0.00001, b=0.004, gap=0.0005)
    hold = release.hold(now=100.0, rows=2, oldest=99.9995)
    # 7 rows fit in 4 ms of waiting (7 x 0.51 ms); it waits for the 6 after these 2.
    assert hold == pytest.approx(6 * 0.0005)
    assert release.hold(now=100.0, rows=7, oldest=99.9995) > 0
    assert release.hold(now=100.0, rows=8, oldest=99.9995) == 0.0


def test_a_batch_leaves_at_once_when_a_batch_costs_less_than_the_wait() -> None:
    # A CPU-like model: 0.1 ms per batch; a request every 0.5 ms never pays for its wait.
    release = policy(a=0.00001, b=0.0001, gap=0.0005)
    assert release.hold(now=100.0, rows=1, oldest=100.0) == 0.0


def test_the_delay_bounds_the_wait() -> None:
    release = policy(a=0.0, b=1.0, gap=0.001, delay_ms=10.0)
    assert release.hold(now=100.0, rows=1, oldest=99.995) == pytest.approx(0.005)
    assert release.hold(now=100.0, rows=1, oldest=99.990) == 0.0
    assert release.hold(now=100.0, rows=1, oldest=99.9) == 0.0


def test_a_full_batch_never_waits() -> None:
    release = policy(a=0.0, b=1.0, gap=0.001, max_batch_size=8)
    assert release.hold(now=100.0, rows=8, oldest=100.0) == 0.0
    # Short of full, it waits for the rows that fill it, no more.
    assert release.hold(now=100.0, rows=6, oldest=100.0) == pytest.approx(2 * 0.001)


def test_when_requests_stop_arriving_the_batch_stops_waiting() -> None:
    release = policy(a=0.0, b=0.004, gap=0.0005, delay_ms=50.0)
    assert release.hold(now=100.0, rows=1, oldest=100.0) > 0
    # 3 ms without a request: the next one is not expected within what a batch costs.
    assert release.hold(now=100.003, rows=2, oldest=100.0) == 0.0


def test_nothing_waits_on_a_guess() -> None:
    release = ReleasePolicy(32, 0.01)
    assert release.expected_gap(100.0) == math.inf
    assert release.hold(now=100.0, rows=1, oldest=100.0) == 0.0
    # Arrivals known, but no batches of different sizes seen yet.
    release.arrived(99.999, 1)
    release.arrived(100.0, 1)
    assert release.expected_gap(100.0) == pytest.approx(0.001)
    assert release.hold(now=100.0, rows=1, oldest=100.0) == 0.0


def test_multi_row_requests_count_per_row() -> None:
    release = ReleasePolicy(32, 0.01)
    release.arrived(0.0, 1)
    release.arrived(0.004, 4)
    assert release.expected_gap(0.004) == pytest.approx(0.001)
