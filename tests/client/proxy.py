"""A TCP proxy in front of a live server that cuts event streams, like a flaky network."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class CuttingProxy:
    """Forwards to ``upstream``; the first ``cuts`` event-stream answers are cut off after
    ``after_bytes`` bytes (mid-message, most likely). Other requests pass untouched."""

    upstream: tuple[str, int]
    after_bytes: int
    cuts: int
    url: str = ""
    cut: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _take_cut(self) -> bool:
        with self._lock:
            if self.cut >= self.cuts:
                return False
            self.cut += 1
            return True

    def handle(self, downstream: socket.socket) -> None:
        upstream = socket.create_connection(self.upstream)
        streaming = threading.Event()

        def to_server() -> None:
            with contextlib.suppress(OSError):
                while data := downstream.recv(65536):
                    if b"text/event-stream" in data.lower():
                        streaming.set()
                    upstream.sendall(data)
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_WR)

        threading.Thread(target=to_server, daemon=True).start()
        sent = 0
        cutting = False
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if streaming.is_set() and not cutting:
                    cutting = self._take_cut()
                    sent = 0
                if cutting and sent + len(data) >= self.after_bytes:
                    downstream.sendall(data[: max(0, self.after_bytes - sent)])
                    break
                downstream.sendall(data)
                sent += len(data)
        for sock in (downstream, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@contextlib.contextmanager
def cutting_proxy(url: str, *, after_bytes: int, cuts: int) -> Iterator[CuttingProxy]:
    """Serve a :class:`CuttingProxy` for ``url`` on a free local port until the block ends."""
    parts = urlsplit(url)
    proxy = CuttingProxy((parts.hostname or "127.0.0.1", parts.port or 80), after_bytes, cuts)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)
    proxy.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=proxy.handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
