"""A throwaway Modelyard server in a child process: ``modelyard serve`` on a free port.

Its data (database, blobs, scratch files) goes to one temporary directory, which is also
the child's ``TMPDIR``, and which is removed once the server has stopped, so nothing is
left behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

# The server imports torch and migrates its database before it answers.
STARTUP_TIMEOUT_S = 120.0
# uvicorn's graceful shutdown (10 s) plus the job executor's.
STOP_TIMEOUT_S = 30.0
LOG_TAIL_CHARS = 4000


class ServerStartError(RuntimeError):
    """The child server exited or did not answer in time; the message has its log's tail."""


@dataclass(frozen=True)
class LocalServer:
    """A running child server: where it listens and its admin key."""

    url: str
    api_key: str


@contextlib.contextmanager
def local_server(startup_timeout: float = STARTUP_TIMEOUT_S) -> Iterator[LocalServer]:
    """Start a server with a fresh data directory and admin key; stop it and delete it all."""
    # A short name: the child's Unix sockets (the job executor's) live under it, and socket
    # paths are limited to about 100 bytes.
    with tempfile.TemporaryDirectory(prefix="modelyard-", ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        key = "my_" + secrets.token_urlsafe(32)
        port = _free_port()
        # The child must not pick up the caller's server settings (its database, its S3).
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
        env.update(
            MODELYARD_DATA_DIR=str(root / "data"),
            MODELYARD_BOOTSTRAP_KEY=key,
            # Libraries write beside the server's data, not in the system's temporary folder:
            # torch its compile cache, ONNX Runtime a session file.
            TMPDIR=str(root),
            TORCHINDUCTOR_CACHE_DIR=str(root / "torch-cache"),
        )
        log_path = root / "server.log"
        command = [sys.executable, "-m", "modelyard", "serve", "--host", "127.0.0.1"]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*command, "--port", str(port)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C in the terminal reaches only the demo, which then
                # stops the server in order.
                start_new_session=True,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_healthy(process, url, log_path, startup_timeout)
            yield LocalServer(url=url, api_key=key)
        finally:
            _stop(process)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_healthy(
    process: subprocess.Popen[bytes], url: str, log_path: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=2.0) as http:
        while True:
            if process.poll() is not None:
                raise ServerStartError(
                    f"the demo server exited with {process.returncode}:\n{_tail(log_path)}"
                )
            with contextlib.suppress(httpx.TransportError):
                if http.get("/healthz").status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"the demo server did not answer within {timeout:.0f} s:\n{_tail(log_path)}"
                )
            time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Interrupt the server (a graceful stop), then terminate, then kill if it lingers."""
    for signum, wait_s in (
        (signal.SIGINT, STOP_TIMEOUT_S),
        (signal.SIGTERM, 10.0),
        (signal.SIGKILL, 10.0),
    ):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait_s)


def _tail(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    return text[-LOG_TAIL_CHARS:]
