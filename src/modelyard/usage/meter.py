"""Metering: what every inference request and every job used, kept in ``usage_records``.

Inference requests are summed in memory per minute and per (kind, project, key, principal,
deployment, model, version, status) — a few integer additions under a lock on the request
path — and written in one batch every ``usage_flush_s`` by a background thread. A server
killed with SIGKILL loses what it metered since its last write: at most one interval (1 s by
default). A write that fails keeps the sums for the next one.

A job's usage is written by :func:`job_usage_row` in the very transaction that moves the job
to its final status, so it is never lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import insert

from modelyard.db.engine import Database
from modelyard.db.tables import UsageRecord

log = logging.getLogger("modelyard.usage")

MINUTE = 60
# The width of rows as written: minute-aligned, not yet merged with the minute's other rows.
RAW = 0

# One group of requests: (start_time, kind, project, key, principal, deployment, model,
# version, status) -> [requests, rows, input_tokens, output_tokens, compute_s]
Group = tuple[int, str, str | None, str | None, str | None, str | None, str | None, int | None, str]
_FIELDS = ("requests", "rows", "input_tokens", "output_tokens", "compute_s")


class Meter:
    """Sums of inference use not yet written, and the thread that writes them."""

    def __init__(self, db: Database, flush_s: float) -> None:
        self._db = db
        self._flush_s = flush_s
        self._lock = threading.Lock()
        self._pending: dict[Group, list[float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._after_flush: list[Callable[[], None]] = []

    def add(
        self,
        kind: str,
        project_id: str | None,
        key_id: str | None,
        principal_id: str | None,
        deployment: str | None,
        model: str | None,
        version: int | None,
        status: str,
        rows: int = 0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        compute_s: float = 0.0,
    ) -> None:
        """Count one request (cheap: no I/O)."""
        start = int(time.time()) // MINUTE * MINUTE
        group = (start, kind, project_id, key_id, principal_id, deployment, model, version, status)
        with self._lock:
            sums = self._pending.get(group)
            if sums is None:
                self._pending[group] = [1, rows, input_tokens, output_tokens, compute_s]
            else:
                sums[0] += 1
                sums[1] += rows
                sums[2] += input_tokens
                sums[3] += output_tokens
                sums[4] += compute_s

    def pending(self) -> dict[Group, list[float]]:
        """A copy of what is not written yet (budgets count it too)."""
        with self._lock:
            return {group: list(sums) for group, sums in self._pending.items()}

    def flush(self) -> int:
        """Write what was metered since the last write, in one transaction; rows written."""
        with self._lock:
            taken, self._pending = self._pending, {}
        if not taken:
            return 0
        rows = [_row(group, sums) for group, sums in taken.items()]
        try:
            with self._db.session() as session:
                session.execute(insert(UsageRecord), rows)
        except Exception:
            log.exception(
                "could not write %d usage rows; keeping them for the next write", len(rows)
            )
            with self._lock:
                for group, sums in taken.items():
                    mine = self._pending.setdefault(group, [0, 0, 0, 0, 0.0])
                    for i, value in enumerate(sums):
                        mine[i] += value
            return 0
        return len(rows)

    def on_flush(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` in the writer thread after every interval (cache refreshes)."""
        self._after_flush.append(callback)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="usage-meter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the writer thread after a last write."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self._flush_s):
            self.flush()
            for callback in self._after_flush:
                try:
                    callback()
                except Exception:
                    log.exception("usage background task failed")


def rows_of(inputs: Mapping[str, Any]) -> int:
    """The rows of one inference request: the first dimension of its first input."""
    for array in inputs.values():
        shape = getattr(array, "shape", None)
        return int(shape[0]) if shape else 1
    return 0


def _row(group: Group, sums: list[float]) -> dict[str, Any]:
    start, kind, project, key, principal, deployment, model, version, status = group
    return {
        "start_time": start,
        "width": RAW,
        "kind": kind,
        "project_id": project,
        "key_id": key,
        "principal_id": principal,
        "deployment": deployment,
        "model": model,
        "version": version,
        "job_id": None,
        "status": status,
        "requests": int(sums[0]),
        "rows": int(sums[1]),
        "input_tokens": int(sums[2]),
        "output_tokens": int(sums[3]),
        "compute_s": float(sums[4]),
        "cpu_s": 0.0,
        "gpu_s": 0.0,
        "wall_s": 0.0,
        "peak_memory_bytes": 0,
        "bytes_written": 0,
    }


def job_usage_row(
    job_id: str,
    job_type: str,
    status: str,
    owner_id: str | None,
    meter: dict[str, Any] | None,
    measured: dict[str, Any] | None,
) -> UsageRecord:
    """The usage row of one finished job (or of one attempt that ended).

    ``meter`` is what the job's spec remembers of its submission (key and project);
    ``measured`` what its worker measured (CPU-, GPU- and wall-seconds, peak memory, bytes
    written); without it (the worker died) the row holds what the server knows.
    """
    meter = meter or {}
    measured = measured or {}
    now = int(time.time())
    return UsageRecord(
        start_time=now // MINUTE * MINUTE,
        width=RAW,
        kind="job",
        project_id=meter.get("project_id"),
        key_id=meter.get("key_id"),
        principal_id=owner_id,
        deployment=None,
        model=job_type,
        version=None,
        job_id=job_id,
        status=status,
        requests=1,
        rows=0,
        input_tokens=0,
        output_tokens=0,
        compute_s=0.0,
        cpu_s=float(measured.get("cpu_s", 0.0)),
        gpu_s=float(measured.get("gpu_s", 0.0)),
        wall_s=float(measured.get("wall_s", 0.0)),
        peak_memory_bytes=int(measured.get("peak_memory_bytes", 0)),
        bytes_written=int(measured.get("bytes_written", 0)),
    )


__all__ = ["MINUTE", "RAW", "Meter", "job_usage_row", "rows_of"]
