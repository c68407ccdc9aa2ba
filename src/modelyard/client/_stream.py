"""Following a job's live event stream, reconnecting so that no event is missed.

The server numbers events 1, 2, 3… and resumes a stream after the ``Last-Event-ID`` it is
sent, so a dropped connection costs nothing: the follower reconnects with the last number
it delivered and skips anything it has already seen.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import httpx

from modelyard.client._exceptions import ModelyardError, TransportError
from modelyard.client._http import HTTP
from modelyard.client._sse import ServerSentEvent, iter_sse
from modelyard.client._types import JobEvent

# Consecutive failed reconnects (the server unreachable) before the follower gives up.
RECONNECTS = 8
MAX_DELAY_S = 30.0
# Until the server says otherwise with a ``retry:`` field.
DEFAULT_RETRY_S = 1.0
END_EVENT = "end"


def follow(
    http: HTTP,
    path: str,
    *,
    after: int = 0,
    finished: Callable[[], bool],
    deadline: float | None = None,
) -> Iterator[JobEvent]:
    """Yield the events numbered above ``after`` from the stream at ``path``, live.

    Ends when the server ends the stream (its ``end`` message, or a close once
    ``finished()`` says the job is over) or when ``deadline`` (a :func:`time.monotonic`
    value) passes. A failure to connect the first time raises :class:`TransportError`;
    later drops are retried with backoff.
    """
    last = after
    delay = DEFAULT_RETRY_S
    failures = 0
    connected = False
    while True:
        timeout = _timeout(http.client.timeout, deadline)
        if timeout is None:
            return
        headers = {"Accept": "text/event-stream"}
        if last:
            headers["Last-Event-ID"] = str(last)
        error: httpx.TransportError | None = None
        try:
            with http.stream(path, headers=headers, timeout=timeout) as response:
                _check_event_stream(response, path)
                connected = True
                failures = 0
                for message in iter_sse(response.iter_lines()):
                    # A busy stream never times out a read, so the deadline is checked here.
                    if deadline is not None and time.monotonic() >= deadline:
                        return
                    if message.retry is not None:
                        delay = message.retry / 1000
                    if message.event == END_EVENT:
                        return
                    event = _event(message, path)
                    if event is None or event.seq <= last:
                        continue
                    last = event.seq
                    yield event
        except httpx.TransportError as exc:
            if not connected:
                raise TransportError(f"GET {path}: {exc}") from exc
            error = exc
        else:
            # Closed without the end message: over if the job is, else a proxy or a
            # restarting server cut it.
            if finished():
                return
        if deadline is not None and time.monotonic() >= deadline:
            return
        failures += 1
        if failures > RECONNECTS:
            reason = f": {error}" if error else ""
            raise TransportError(
                f"GET {path}: the event stream could not be resumed after {RECONNECTS} "
                f"attempts{reason}"
            ) from error
        pause = min(delay * 2 ** (failures - 1), MAX_DELAY_S)
        if deadline is not None:
            pause = min(pause, max(0.0, deadline - time.monotonic()))
        time.sleep(pause)


def _timeout(base: httpx.Timeout, deadline: float | None) -> httpx.Timeout | None:
    """The client's timeouts, with reads cut short at ``deadline``; None once it passed."""
    if deadline is None:
        return base
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    read = remaining if base.read is None else min(base.read, remaining)
    return httpx.Timeout(connect=base.connect, read=read, write=base.write, pool=base.pool)


def _check_event_stream(response: httpx.Response, path: str) -> None:
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("text/event-stream"):
        raise ModelyardError(
            f"GET {path}: the server answered {content_type or 'no content type'}, "
            "not an event stream"
        )


def _event(message: ServerSentEvent, path: str) -> JobEvent | None:
    """The job event a message carries; None for messages that carry none."""
    if message.data is None:
        return None
    try:
        payload = json.loads(message.data)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise ModelyardError(
            f"GET {path}: an event's data is not a JSON object: {message.data!r:.200}"
        )
    if message.id is not None and message.id.isdigit():
        seq = int(message.id)
    elif isinstance(payload.get("seq"), int):
        seq = payload["seq"]
    else:
        return None
    return JobEvent.from_stream(seq, message.event or "message", payload)
