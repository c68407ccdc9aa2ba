"""The gRPC server of one server process, on the event loop the HTTP app runs on.

It is a ``grpc.aio`` server: its handlers run as tasks on uvicorn's event loop, next to the
HTTP routes, so they await the deployments' batchers directly (a thread-pool server would
hand every request across threads to that loop and back). :func:`attach` ties it to the
app's lifespan: it starts once the app has started (deployments loaded), and stops, letting
calls in flight finish, before the app shuts down::

    app = create_app(platform, own_platform=True)
    attach(app, platform)  # serves on settings.host:settings.grpc_port
    uvicorn.run(app, host=settings.host, port=settings.port)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import grpc
from fastapi import FastAPI
from grpc import aio

from modelyard.api.grpc.metrics import GrpcMetrics
from modelyard.api.grpc.service import SERVICE, InferenceService
from modelyard.errors import ModelyardError
from modelyard.platform import Platform

log = logging.getLogger("modelyard.grpc")
STOP_GRACE_S = 10.0
"""How long calls in flight may take to finish when the server stops (uvicorn's own)."""


def address(host: str, port: int) -> str:
    """``host:port`` as gRPC wants it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class GrpcServer:
    """``inference.GRPCInferenceService`` on ``host:port``; start and stop it on one loop.

    With ``ssl_certfile`` and ``ssl_keyfile`` set it speaks TLS with the HTTP server's
    certificate (``grpc.ssl_channel_credentials(root_certificates=ca)`` on the client).
    """

    def __init__(self, platform: Platform, host: str, port: int) -> None:
        self.platform = platform
        self.address = address(host, port)
        self.metrics = GrpcMetrics(platform.metrics_registry)
        self.port: int | None = None
        self._server: aio.Server | None = None

    async def start(self) -> int:
        """Bind and start serving; returns the port (the one chosen when ``port`` was 0).

        Raises ModelyardError when the address cannot be bound (in use, or not this host's).
        """
        settings = self.platform.settings
        server = aio.server(
            options=[
                # The HTTP body cap, applied to the request message (RESOURCE_EXHAUSTED beyond).
                ("grpc.max_receive_message_length", settings.max_infer_bytes),
                ("grpc.max_send_message_length", -1),
                # A second server on the same port fails instead of silently sharing it.
                ("grpc.so_reuseport", 0),
            ]
        )
        handlers = InferenceService(self.platform, self.metrics).handlers()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        register = getattr(server, "add_registered_method_handlers", None)
        if register is not None:  # grpcio >= 1.63 looks registered methods up faster
            register(SERVICE, handlers)
        try:
            if settings.ssl_certfile is not None and settings.ssl_keyfile is not None:
                # The HTTP server's certificate: gRPC clients trust the same CA.
                pair = (settings.ssl_keyfile.read_bytes(), settings.ssl_certfile.read_bytes())
                credentials = grpc.ssl_server_credentials([pair])
                port: int = server.add_secure_port(self.address, credentials)
            else:
                port = server.add_insecure_port(self.address)
        except (RuntimeError, OSError) as exc:
            raise ModelyardError(f"cannot listen for gRPC on {self.address}: {exc}") from None
        if not port:
            raise ModelyardError(f"cannot listen for gRPC on {self.address}")
        await server.start()
        self._server, self.port = server, port
        return port

    async def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Refuse new calls, give those in flight ``grace`` seconds, then cancel the rest."""
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None


Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def attach(app: FastAPI, platform: Platform) -> None:
    """Serve gRPC on ``settings.host:settings.grpc_port`` while ``app`` runs.

    The app's lifespan is wrapped: gRPC starts after the app's own startup and stops before
    its shutdown. A port that cannot be bound fails the app's startup.
    """
    settings = platform.settings
    inner: Lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        async with inner(app_) as state:
            server = GrpcServer(platform, settings.host, settings.grpc_port)
            await server.start()
            log.info("Modelyard gRPC (inference.GRPCInferenceService) on %s", server.address)
            try:
                yield state
            finally:
                await server.stop()

    app.router.lifespan_context = lifespan
