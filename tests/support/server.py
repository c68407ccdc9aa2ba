"""A real uvicorn server on 127.0.0.1 in a thread of the test process."""

from __future__ import annotations

import contextlib
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
