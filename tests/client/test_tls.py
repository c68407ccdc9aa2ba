"""TLS: a server started with a certificate signed by a test CA, the SDK and the CLI trusting
that CA, and what a client that gets the scheme or the trust wrong is told."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Client, TransportError
from tests.support.server import LiveServer, live_server
from tests.support.tls import Certificates, make_certificates


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path)


@pytest.fixture
def tls_server(make_settings: Callable[..., object], certs: Certificates) -> Iterator[LiveServer]:
    settings = make_settings(ssl_certfile=certs.cert, ssl_keyfile=certs.key)
    with live_server(settings) as srv:  # type: ignore[arg-type]
        yield srv


def test_the_sdk_and_cli_talk_tls_to_a_server_with_a_test_ca(
    tls_server: LiveServer, certs: Certificates
) -> None:
    assert tls_server.url.startswith("https://")
    with Client(tls_server.url, tls_server.admin_key, verify=certs.ca) as client:
        assert client.whoami().principal.name == "admin"

    # Not trusting the CA: a clear error saying what to pass.
    with (
        Client(tls_server.url, tls_server.admin_key) as client,
        pytest.raises(TransportError, match="not trusted: pass its CA bundle"),
    ):
        client.whoami()

    # Plain HTTP to the TLS port fails cleanly, and the server goes on serving.
    plain = tls_server.url.replace("https://", "http://")
    with (
        Client(plain, tls_server.admin_key, timeout=10) as client,
        pytest.raises(TransportError, match="use an https:// URL"),
    ):
        client.whoami()
    with Client(tls_server.url, tls_server.admin_key, verify=str(certs.ca)) as client:
        assert client.whoami().principal.name == "admin"

    env = {"MODELYARD_URL": tls_server.url, "MODELYARD_API_KEY": tls_server.admin_key}
    runner = CliRunner()
    listed = runner.invoke(app, ["--ca-bundle", str(certs.ca), "models", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    from_env = runner.invoke(
        app, ["models", "list"], env={**env, "MODELYARD_CA_BUNDLE": str(certs.ca)}
    )
    assert from_env.exit_code == 0, from_env.output
    untrusted = runner.invoke(app, ["models", "list"], env=env)
    assert untrusted.exit_code == 1 and "--ca-bundle" in untrusted.output


def test_serve_takes_the_certificate_and_refuses_half_of_it(
    monkeypatch: pytest.MonkeyPatch, certs: Certificates
) -> None:
    import sys
    import types

    started: list[object] = []
    module = types.ModuleType("modelyard.api.server")
    module.serve = started.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "modelyard.api.server", module)
    runner = CliRunner()
    ok = runner.invoke(
        app, ["serve", "--ssl-certfile", str(certs.cert), "--ssl-keyfile", str(certs.key)]
    )
    assert ok.exit_code == 0, ok.output
    assert started[0].tls  # type: ignore[attr-defined]
    half = runner.invoke(app, ["serve", "--ssl-certfile", str(certs.cert)])
    assert half.exit_code == 1 and "go together" in half.output


def test_grpc_speaks_tls_with_the_same_certificate(
    tls_server: LiveServer, certs: Certificates
) -> None:
    import asyncio

    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    from modelyard.api.grpc import GrpcServer

    async def live() -> bool:
        server = GrpcServer(tls_server.platform, "127.0.0.1", 0)
        port = await server.start()
        try:
            trust = grpc.ssl_channel_credentials(root_certificates=certs.ca.read_bytes())
            async with grpc.aio.secure_channel(f"127.0.0.1:{port}", trust) as channel:
                stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
                reply = await stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10)
                return bool(reply.live)
        finally:
            await server.stop(0)

    assert asyncio.run(live())
