"""Start a real Modelyard server process for a benchmark and watch its memory."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

BENCH_KEY = "my_bench-admin-key-0123456789abcdefghijklmnopqrstuvw"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    url: str
    key: str
    process: subprocess.Popen[bytes]
    data_dir: Path


@contextlib.contextmanager
def server_process(**env: str) -> Iterator[ServerProcess]:
    """``python -m modelyard serve`` on a free port with a temporary data dir."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp:
        environ = dict(os.environ)
        environ.update(MODELYARD_DATA_DIR=tmp, MODELYARD_BOOTSTRAP_KEY=BENCH_KEY, **env)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelyard",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            # Several worker processes import the stack side by side: minutes on a busy box.
            deadline = time.monotonic() + 300
            while True:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    # Measure a server that has finished loading, not one still importing.
                    if httpx.get(url + "/readyz", timeout=1).json().get("warm"):
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the benchmark server did not start")
                time.sleep(0.1)
            yield ServerProcess(url, BENCH_KEY, proc, Path(tmp))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@dataclass
class PeakRss:
    """Samples a process's resident memory in a thread; ``peak`` is the highest seen."""

    pid: int
    interval: float = 0.02
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> PeakRss:
        proc = psutil.Process(self.pid)

        def sample() -> None:
            while not self._stop.is_set():
                with contextlib.suppress(psutil.Error):
                    self.peak = max(self.peak, proc.memory_info().rss)
                time.sleep(self.interval)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
