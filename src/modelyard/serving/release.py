"""When a batch leaves while another batch computes: wait for more rows only while it pays.

::

    policy = ReleasePolicy(max_batch_size=32, max_delay_s=0.002)
    policy.arrived(now, rows=1)            # every request, as it is queued
    policy.computed(rows=8, seconds=0.004)  # every batch that succeeded
    hold = policy.hold(now, rows=3, oldest=arrived_at)  # 0.0: release the 3 rows now

The batcher asks only while a batch computes and a worker is free; with every worker idle a
batch always leaves at once. Batch latency is modelled as ``a·n + b`` seconds for ``n`` rows,
fitted over recent batches (BentoML's ``CorkDispatcher`` fits the same line): ``b`` is what a
batch costs whatever its size (a kernel launch, a framework call, a copy to the device) and
``a`` what each row adds. Holding ``n`` queued rows back for the next one, expected in
``gap`` seconds, costs them ``n·(gap + a)`` seconds of latency together and saves the ``b`` of
the batch that row would otherwise need, so the batch waits while::

    n · (gap + a) <= b

and while a fuller batch can still form (fewer than ``max_batch_size`` rows, requests still
arriving), never longer than ``max_delay_s`` after its oldest row arrived (Triton's rule: the
delay is an upper bound, not a floor). On a CPU, where ``b`` is small next to the gaps between
requests, batches leave as soon as a worker is free; on a GPU, where ``b`` dominates, they wait
for the rows that arrive within it. Until the fit has seen batches of different sizes, ``b``
counts as 0: nothing waits on a guess.
"""

from __future__ import annotations

import math

# Weight of each new batch in the fit, and of each new gap in the arrival estimate: the fit
# follows the last few dozen batches, the arrival estimate the last few requests.
_FIT_WEIGHT = 0.05
_GAP_WEIGHT = 0.2
# Batches must differ by about a row in size before a slope can be told from noise.
_MIN_SIZE_VARIANCE = 0.25


class LatencyFit:
    """Batch latency as ``a·n + b``, by exponentially weighted least squares over batches."""

    __slots__ = ("_n", "_nn", "_ny", "_w", "_y")

    def __init__(self) -> None:
        self._w = self._n = self._y = self._nn = self._ny = 0.0

    def add(self, rows: int, seconds: float) -> None:
        """One computed batch of ``rows`` rows that took ``seconds``."""
        keep = 1.0 - _FIT_WEIGHT
        self._w = self._w * keep + 1.0
        self._n = self._n * keep + rows
        self._y = self._y * keep + seconds
        self._nn = self._nn * keep + rows * rows
        self._ny = self._ny * keep + rows * seconds

    @property
    def line(self) -> tuple[float, float] | None:
        """``(a, b)`` in seconds per row and per batch, or None while sizes did not vary.

        Both are clamped at 0: timing noise must not make rows or batches look free of cost
        in the other direction.
        """
        if self._w == 0.0:
            return None
        mean_n, mean_y = self._n / self._w, self._y / self._w
        variance = self._nn / self._w - mean_n * mean_n
        if variance < _MIN_SIZE_VARIANCE:
            return None
        slope = (self._ny / self._w - mean_n * mean_y) / variance
        a = max(0.0, slope)
        return a, max(0.0, mean_y - a * mean_n)


class ReleasePolicy:
    """Decides how long a batch keeps collecting rows while another batch computes."""

    __slots__ = ("_gap", "_last", "fit", "max_batch_size", "max_delay_s")

    def __init__(self, max_batch_size: int, max_delay_s: float) -> None:
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.fit = LatencyFit()
        self._gap: float | None = None
        self._last: float | None = None

    def arrived(self, now: float, rows: int) -> None:
        """``rows`` rows were queued at ``now`` (monotonic seconds)."""
        if self._last is not None:
            gap = max(0.0, now - self._last) / rows
            self._gap = gap if self._gap is None else self._gap + _GAP_WEIGHT * (gap - self._gap)
        self._last = now

    def computed(self, rows: int, seconds: float) -> None:
        """A batch of ``rows`` rows was computed in ``seconds``."""
        self.fit.add(rows, seconds)

    def expected_gap(self, now: float) -> float:
        """Seconds until the next row is expected; infinite before two arrivals were seen.

        When the last arrival is longer ago than the usual gap, requests have slowed down,
        and the time since it is the better guess.
        """
        if self._gap is None or self._last is None:
            return math.inf
        return max(self._gap, now - self._last)

    def hold(self, now: float, rows: int, oldest: float) -> float:
        """Seconds to keep ``rows`` queued rows (the oldest queued at ``oldest``) collecting
        before asking again; 0.0 to release them now.

        While waiting pays, the hold lasts until the rows that still pay are expected, so a
        batch is looked at again once per hold rather than once per arriving request.
        """
        left = oldest + self.max_delay_s - now
        if rows >= self.max_batch_size or left <= 0.0:
            return 0.0
        line = self.fit.line
        gap = self.expected_gap(now)
        if line is None or gap == 0.0 or math.isinf(gap):
            return 0.0
        a, b = line
        affordable = math.floor(b / (gap + a))
        if affordable < rows:
            return 0.0
        # The batch leaves with the first row that no longer pays, or when it is full.
        wanted = min(affordable + 1, self.max_batch_size) - rows
        return min(left, wanted * gap)


__all__ = ["LatencyFit", "ReleasePolicy"]
