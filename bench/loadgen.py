"""A small HTTP/1.1 load generator: one URL, one fixed request, many keep-alive connections.

::

    result = run_load(url, body, {"Content-Type": "text/plain"}, requests=3000, concurrency=64)
    print(result.req_per_s, result.p50, result.p99, result.statuses)

Each of ``concurrency`` connections sends the same pre-encoded request, parses the status
line, the headers and a ``Content-Length`` (or chunked) body, and sends the next request from
inside the protocol callback, so a request costs the client no task, future or stream. One
core of client sends well over 5,000 requests/s to a trivial server (httpx manages a few
hundred). Runs on uvloop when it is installed. A connection that fails or is closed by the
server is counted as status 0 for its request and opened again.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

_HEADER_END = b"\r\n\r\n"


@dataclass
class LoadResult:
    """What one run measured; latencies are in seconds, in completion order."""

    statuses: Counter[int] = field(default_factory=Counter)
    """Responses by HTTP status; 0 counts requests whose connection failed."""
    latencies: list[float] = field(default_factory=list)
    """Seconds from sending each request to its last response byte."""
    wall_s: float = 0.0
    """Seconds from the first request sent to the last response received."""
    first_body: bytes = b""
    """The body of the first response, to check what the server answered."""
    wrong: int = 0
    """2xx responses whose body the run's ``check`` refused."""

    @property
    def req_per_s(self) -> float:
        return len(self.latencies) / self.wall_s if self.wall_s else 0.0

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)

    @property
    def ok(self) -> int:
        """Responses with a 2xx status."""
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def failed(self) -> int:
        """Requests without a 2xx status, plus 2xx responses with a wrong body."""
        return len(self.latencies) - self.ok + self.wrong


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``, or nan when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def encode_request(
    url: str, body: bytes, headers: dict[str, str], method: str = "POST"
) -> tuple[str, int, bytes]:
    """``(host, port, request bytes)`` for ``method url`` with ``body`` and ``headers``."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only http:// URLs are supported, got {url!r}")
    port = parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
    given = {name.lower() for name in headers}
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if "content-length" not in given and (body or method not in ("GET", "HEAD")):
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return parts.hostname, port, head + body


def _parse_response(buf: bytearray) -> tuple[int, bytes, int, bool] | None:
    """``(status, body, bytes used, keep-alive)`` of the first whole response in ``buf``."""
    end = buf.find(_HEADER_END)
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    status = int(head[9:12])
    start = end + 4
    keep_alive = b"\r\nconnection: close" not in head
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        stop = head.find(b"\r\n", at + 17)
        length = int(head[at + 17 : stop if stop >= 0 else len(head)])
        if len(buf) < start + length:
            return None
        return status, bytes(buf[start : start + length]), start + length, keep_alive
    if b"\r\ntransfer-encoding: chunked" in head:
        chunks: list[bytes] = []
        pos = start
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(bytes(buf[pos:line_end]).split(b";", 1)[0], 16)
            pos = line_end + 2
            if size == 0:
                trailer_end = buf.find(b"\r\n", pos)
                while trailer_end > pos:
                    pos = trailer_end + 2
                    trailer_end = buf.find(b"\r\n", pos)
                if trailer_end < 0:
                    return None
                return status, b"".join(chunks), trailer_end + 2, keep_alive
            if len(buf) < pos + size + 2:
                return None
            chunks.append(bytes(buf[pos : pos + size]))
            pos += size + 2
    if status in (204, 304) or 100 <= status < 200:
        return status, b"", start, keep_alive
    raise ValueError("response without Content-Length or chunked body is not supported")


class _Run:
    """Shared state of one run: the requests left and what came back."""

    def __init__(
        self,
        request: bytes,
        requests: int,
        done: asyncio.Future[None],
        check: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.request = request
        self.left = requests
        self.pending = requests
        self.result = LoadResult()
        self.done = done
        self.connect: Callable[[], None] = lambda: None
        self.check = check
        # The request never changes, so its answers take few distinct bodies (batches of
        # other sizes may change the last bits): each one is checked once.
        self.verdicts: dict[bytes, bool] = {}

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True

    def record(self, status: int, latency: float, body: bytes) -> None:
        result = self.result
        result.statuses[status] += 1
        result.latencies.append(latency)
        if 200 <= status < 300:
            if not result.first_body:
                result.first_body = body
            if self.check is not None:
                verdict = self.verdicts.get(body)
                if verdict is None:
                    verdict = self.verdicts[body] = self.check(body)
                result.wrong += not verdict
        self.pending -= 1
        if self.pending == 0 and not self.done.done():
            self.done.set_result(None)


class _Connection(asyncio.Protocol):
    """One keep-alive connection that sends the next request when a response completes."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0.0
        self.in_flight = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        if not self.run.take():
            self.transport.close()
            return
        self.in_flight = True
        self.sent_at = time.perf_counter()
        self.transport.write(self.run.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            parsed = _parse_response(self.buf)
        except ValueError:
            self._fail()
            return
        if parsed is None:
            return
        status, body, used, keep_alive = parsed
        latency = time.perf_counter() - self.sent_at
        del self.buf[:used]
        self.in_flight = False
        self.run.record(status, latency, body)
        if keep_alive:
            self._send()
        else:
            self._close_and_reconnect()

    def _fail(self) -> None:
        if self.in_flight:
            self.in_flight = False
            self.run.record(0, time.perf_counter() - self.sent_at, b"")
        self._close_and_reconnect()

    def _close_and_reconnect(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        if self.run.left > 0:
            self.run.connect()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.transport = None
            if self.in_flight:
                self.in_flight = False
                self.run.record(0, time.perf_counter() - self.sent_at, b"")
            if self.run.left > 0:
                self.run.connect()


async def load(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    requests: int,
    concurrency: int,
    method: str = "POST",
    check: Callable[[bytes], bool] | None = None,
) -> LoadResult:
    """Send ``requests`` copies of one request over ``concurrency`` connections; see run_load."""
    if requests < 1 or concurrency < 1:
        raise ValueError("requests and concurrency must be at least 1")
    loop = asyncio.get_running_loop()
    host, port, request = encode_request(url, body, headers, method)
    run = _Run(request, requests, loop.create_future(), check)
    tasks: set[asyncio.Task[None]] = set()

    async def connect() -> None:
        try:
            await loop.create_connection(lambda: _Connection(run), host, port)
        except OSError:
            if run.take():
                run.record(0, 0.0, b"")
            await asyncio.sleep(0.01)
            if run.left > 0:
                run.connect()

    def spawn() -> None:
        task = loop.create_task(connect())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    run.connect = spawn
    started = time.perf_counter()
    for _ in range(min(concurrency, requests)):
        spawn()
    try:
        await run.done
    finally:
        for task in list(tasks):
            task.cancel()
    run.result.wall_s = time.perf_counter() - started
    return run.result


def run_load(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    requests: int,
    concurrency: int,
    method: str = "POST",
    pause_gc: bool = False,
    check: Callable[[bytes], bool] | None = None,
) -> LoadResult:
    """Send ``requests`` copies of one request over ``concurrency`` keep-alive connections.

    Blocks until every request has an answer (or a failed connection, counted as status 0).
    Runs its own event loop, so call it from a thread that has none running. With
    ``pause_gc`` this process's cyclic garbage collector is off for the run: in a client
    that imported torch, each full collection walks a few hundred thousand objects and
    stalls every request in flight, which would be measured as the server's latency (the
    run itself makes no reference cycles worth collecting). Leave it off when the server
    under test runs in this process. ``check``, when given, is asked about every 2xx body
    (once per distinct body); the ones it refuses are counted in ``LoadResult.wrong``.
    """
    coro = load(
        url, body, headers, requests=requests, concurrency=concurrency, method=method, check=check
    )
    collecting = pause_gc and gc.isenabled()
    if collecting:
        gc.freeze()
        gc.disable()
    try:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(coro)
        return uvloop.run(coro)
    finally:
        if collecting:
            gc.unfreeze()
            gc.enable()
