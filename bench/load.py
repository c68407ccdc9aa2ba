"""How busy other processes kept the host while a timed run went on."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import psutil

T = TypeVar("T")


def _busy_seconds() -> tuple[float, float]:
    """CPU seconds the whole host and this benchmark's process tree have used so far."""
    host = psutil.cpu_times()
    total = host.user + host.nice + host.system + host.irq + host.softirq + host.steal
    ours = 0.0
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        # Children reaped by a process of the tree (finished job workers, exited ranks)
        # count in its children_* times.
        ours += times.user + times.system + times.children_user + times.children_system
    return total, ours


class OtherLoad:
    """How many CPUs other processes on the host kept busy while a timed run went on."""

    def __init__(self) -> None:
        self.runs: list[float] = []

    def measure(self, run: Callable[[], T]) -> T:
        host0, ours0 = _busy_seconds()
        start = time.perf_counter()
        result = run()
        wall = time.perf_counter() - start
        host1, ours1 = _busy_seconds()
        self.runs.append(max(0.0, (host1 - host0) - (ours1 - ours0)) / wall)
        return result
