"""``client.jobs``: submit long work (training), follow it live, read its log, cancel it."""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Mapping
from typing import Any

from modelyard.client._http import HTTP, seg
from modelyard.client._job import Job
from modelyard.client._stream import follow
from modelyard.client._types import JobEvent

_BASE = "/api/v1/jobs"
# The largest page the server hands out.
EVENTS_PAGE = 500


class Jobs:
    """Create, list, inspect, follow and cancel jobs."""

    def __init__(self, http: HTTP) -> None:
        self._http = http

    def create(self, spec: Mapping[str, Any] | None = None, /, **fields: Any) -> Job:
        """Submit a job; the server checks it against its data set before queuing it.

        ``spec`` is the job spec of ``docs/api.md``, structured or flat; keyword arguments
        are merged into it. A spec that does not fit raises :class:`ValidationError`
        naming the field.

        Example::

            job = client.jobs.create(model_name="mlp", data="digits", optimizer="adam",
                                     learning_rate=1e-3, epochs=5)
            job.wait(progress=True)
        """
        body = {**(spec or {}), **fields}
        if not body:
            raise ValueError("create needs a job spec, e.g. {'type': 'train', ...}")
        return Job(self, self._http.object("POST", _BASE, json=body))

    def get(self, job_id: str) -> Job:
        """One job, as it is now."""
        return Job(self, self._http.object("GET", f"{_BASE}/{seg(job_id)}"))

    def list(self, status: str | None = None) -> builtins.list[Job]:
        """Your jobs, newest first (an admin sees everyone's); ``status`` filters them."""
        return [Job(self, j) for j in self._http.paginate(_BASE, {"status": status})]

    def cancel(self, job_id: str) -> Job:
        """Ask the server to stop a job; it is ``cancelled`` once it stops (within seconds)."""
        return Job(self, self._http.object("POST", f"{_BASE}/{seg(job_id)}/cancel"))

    def events(self, job_id: str, after: int = 0) -> builtins.list[JobEvent]:
        """The job's events numbered above ``after``, oldest first, as a list."""
        path = f"{_BASE}/{seg(job_id)}/events"
        found: builtins.list[JobEvent] = []
        while True:
            page = self._http.object("GET", path, params={"after": after, "limit": EVENTS_PAGE})
            items = [JobEvent.from_json(e) for e in page.get("items") or ()]
            found.extend(items)
            # Numbers only grow, so the next page starts after the last event of this one.
            if len(items) < EVENTS_PAGE:
                return found
            after = items[-1].seq

    def stream(self, job_id: str, last_event_id: int | str | None = None) -> Iterator[JobEvent]:
        """The job's events as they happen, from the first (or after ``last_event_id``).

        Reads the server's live event stream; a dropped connection is resumed with
        ``Last-Event-ID``, so no event is missed or repeated. Ends when the server ends the
        stream, right after the job's final event.

        Example::

            for event in client.jobs.stream(job.id):
                if event.type == "epoch":
                    print(event.data["epoch"], event.data["val"])
        """
        return self._follow(job_id, after=int(last_event_id or 0))

    def logs(self, job_id: str) -> str:
        """The job's log as text, one line per event."""
        return self._http.text("GET", f"{_BASE}/{seg(job_id)}/logs")

    def _follow(
        self, job_id: str, *, after: int, deadline: float | None = None
    ) -> Iterator[JobEvent]:
        return follow(
            self._http,
            f"{_BASE}/{seg(job_id)}/events",
            after=after,
            finished=lambda: self.get(job_id).done,
            deadline=deadline,
        )
