"""The :class:`Job` handle: a job's last known state, and the means to follow or stop it."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from modelyard.client._exceptions import JobFailedError, JobTimeoutError
from modelyard.client._progress import job_progress
from modelyard.client._types import (
    TERMINAL_STATUSES,
    JobEvent,
    JSONObject,
    Owner,
    _created,
    _dt,
    _owner,
)

if TYPE_CHECKING:
    from modelyard.client._resources.jobs import Jobs

# After a stream that ended with the job still running (it should not), wait this long
# before looking again rather than spin.
_IDLE_S = 0.5


class Job:
    """A job on the server (``queued → running → succeeded | failed | cancelled``).

    The attributes are the job's state when last fetched; :meth:`refresh` fetches it again
    and :meth:`wait` follows it to the end.

    Example::

        job = client.jobs.create({"type": "train", "model": {"spec": {"arch": "mlp"}},
                                  "dataset": "digits", "label": "y", "epochs": 5})
        job.wait(progress=True)
        print(job.result["model"], job.result["version"], job.result["metrics"])
    """

    id: str
    type: str
    status: str
    owner: Owner | None
    spec: JSONObject
    progress: float
    eta_s: float | None
    metrics: JSONObject
    error: str | None
    attempt: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    raw: JSONObject

    def __init__(self, jobs: Jobs, data: Mapping[str, Any]) -> None:
        self._jobs = jobs
        self._load(data)

    def _load(self, data: Mapping[str, Any]) -> None:
        eta = data.get("eta_s")
        self.id = str(data["id"])
        self.type = str(data.get("type") or "")
        self.status = str(data.get("status") or "")
        self.owner = _owner(data.get("owner"))
        self.spec = dict(data.get("spec") or {})
        self.progress = float(data.get("progress") or 0.0)
        self.eta_s = None if eta is None else float(eta)
        self.metrics = dict(data.get("metrics") or {})
        self._result = dict(data.get("result") or {})
        self.error = data.get("error")
        self.attempt = int(data.get("attempt") or 0)
        self.created_at = _created(data)
        self.started_at = _dt(data.get("started_at"))
        self.finished_at = _dt(data.get("finished_at"))
        self.raw = dict(data)

    @property
    def result(self) -> JSONObject:
        """What the job made: for a train job ``{"model", "version", "metrics"}``.

        Empty until the job has succeeded.
        """
        return dict(self._result)

    @property
    def done(self) -> bool:
        """Whether the job has finished (succeeded, failed or cancelled)."""
        return self.status in TERMINAL_STATUSES

    def refresh(self) -> Job:
        """Fetch the job's current state into this handle; returns it."""
        self._load(self._jobs.get(self.id).raw)
        return self

    def wait(self, progress: bool = False, timeout: float | None = None) -> Job:
        """Follow the job until it ends; return it, or raise if it did not succeed.

        The job's live event stream drives the wait, so it returns as soon as the job ends.
        ``progress=True`` shows a progress bar on stderr with the epoch, the loss and the
        time left. ``timeout`` (seconds) bounds the wait; the job itself is not stopped.

        Raises:
            JobFailedError: the job failed or was cancelled (``.error`` says why).
            JobTimeoutError: ``timeout`` passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last = 0
        with job_progress(self, enabled=progress) as report:
            while True:
                self.refresh()
                report.job(self)
                if self.done:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise JobTimeoutError(self, timeout or 0.0)
                before = last
                for event in self._jobs._follow(self.id, after=last, deadline=deadline):
                    last = event.seq
                    report.event(event)
                    if event.ends_job:
                        break
                if last == before:
                    time.sleep(_IDLE_S if deadline is None else min(_IDLE_S, _left(deadline)))
        if self.status != "succeeded":
            raise JobFailedError(self)
        return self

    def events(self, after: int = 0) -> list[JobEvent]:
        """The job's events numbered above ``after``, oldest first."""
        return self._jobs.events(self.id, after=after)

    def stream(self, last_event_id: int | None = None) -> Iterator[JobEvent]:
        """The job's events as they happen (see :meth:`Jobs.stream`)."""
        return self._jobs.stream(self.id, last_event_id=last_event_id)

    def logs(self) -> str:
        """The job's log as text, one line per event."""
        return self._jobs.logs(self.id)

    def cancel(self) -> Job:
        """Ask the server to stop the job; returns the handle with the updated state."""
        self._load(self._jobs.cancel(self.id).raw)
        return self

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, type={self.type!r}, status={self.status!r})"


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())
