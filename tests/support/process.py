"""A real ``python -m modelyard serve`` process, for tests that kill and restart servers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.server import ADMIN_KEY, free_port


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


def wait_healthy(
    url: str, process: subprocess.Popen[bytes], timeout: float = 90, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log is not None else ""
            raise RuntimeError(f"the server exited with {process.returncode}:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError("the server did not become healthy")


@contextlib.contextmanager
def server_process(data_dir: Path, log: Path, **env: str) -> Iterator[ServerProcess]:
    """Start a server on a free port over ``data_dir``; terminate it afterwards."""
    port = free_port()
    environ = {
        **os.environ,
        "MODELYARD_DATA_DIR": str(data_dir),
        "MODELYARD_BOOTSTRAP_KEY": ADMIN_KEY,
        **env,
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
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
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log=log)
        yield ServerProcess(url, process)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
