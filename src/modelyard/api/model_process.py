"""The model process of a split server (``modelyard serve --workers N --model-process``).

It builds a platform of its own (the registry and blob store to load versions from, the
serving metrics, written to the server's shared Prometheus folder), starts nothing else (no
jobs, no collector, no reconcile: the HTTP processes decide what is served) and answers the
HTTP processes on a Unix socket (:class:`~modelyard.serving.split.ModelHost`) until SIGTERM
or SIGINT, when it finishes what is queued and unloads every version.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from pathlib import Path

from uvicorn.loops.auto import auto_loop_factory

from modelyard.config import Settings
from modelyard.platform import Platform
from modelyard.serving.split import ModelHost

log = logging.getLogger("modelyard.model_process")


def run_model_process(address: str, settings: Settings, metrics_dir: Path) -> None:
    """Serve the models on ``address`` until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    platform = Platform.build(settings, metrics_dir=metrics_dir)
    try:
        # The event loop the HTTP processes run (uvloop where installed): every request
        # crosses it twice.
        with asyncio.Runner(loop_factory=auto_loop_factory()) as runner:
            runner.run(_serve(platform, address))
    finally:
        platform.close()


async def _serve(platform: Platform, address: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    host = ModelHost(platform.registry, platform.serving.load_version)
    server = await asyncio.start_unix_server(host.handle, sock=_listening(address))
    log.info("model process serving on %r", address)
    try:
        await stop.wait()
    finally:
        server.close()
        await host.close()


def _listening(address: str) -> socket.socket:
    """A socket listening on ``address``, bound here: uvloop refuses addresses in Linux's
    abstract namespace (EINVAL) but serves a socket bound to one."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(address)
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


__all__ = ["run_model_process"]
