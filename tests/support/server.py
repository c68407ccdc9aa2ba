"""A real uvicorn server on 127.0.0.1 in a thread of the test process."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from modelyard.api.app import create_app
from modelyard.api.server import tls_options
from modelyard.config import Settings
from modelyard.platform import Platform

ADMIN_KEY = "my_test-admin-key-0123456789abcdefghijklmnopqrstuv"


# Ports for the servers a test starts come from below the kernel's ephemeral range (32768 and
# up, where the client side of every connection gets its port, so a port found free there can
# be taken by a connection before the server binds it) and above Ray's worker ports (10002 to
# 19999). Each pytest-xdist worker has its own slice, so two workers never hand out one port.
_PORTS_FIRST = 20000
_PORTS_SLICE = 1500
_next_port: list[int] = []


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on, for one server of this test process."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    first = _PORTS_FIRST + (int(worker) % 8 if worker.isdigit() else 0) * _PORTS_SLICE
    if not _next_port:
        _next_port.append(first + random.randrange(_PORTS_SLICE))
    for _ in range(_PORTS_SLICE):
        port = _next_port[0]
        _next_port[0] = first + (port + 1 - first) % _PORTS_SLICE
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {first}..{first + _PORTS_SLICE - 1}")


@dataclass
class LiveServer:
    url: str
    platform: Platform
    admin_key: str


@contextlib.contextmanager
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """Build a platform from ``settings``, bootstrap the admin key, serve until exit."""
    platform = Platform.build(settings)
    admin = settings.bootstrap_key.get_secret_value() if settings.bootstrap_key else ADMIN_KEY
    platform.auth.bootstrap(admin)
    app = create_app(platform, own_platform=True)
    port = free_port()
    tls = tls_options(settings)  # https:// when the settings name a certificate
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **tls
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        scheme = "https" if tls else "http"
        yield LiveServer(url=f"{scheme}://127.0.0.1:{port}", platform=platform, admin_key=admin)
    finally:
        server.should_exit = True
        thread.join(timeout=60)
