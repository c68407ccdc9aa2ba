"""Starting a server process: build the platform, create the first admin key, run uvicorn
(and, with ``grpc_port``, the gRPC endpoint on the same event loop), over TLS when
``ssl_certfile`` and ``ssl_keyfile`` are set."""

from __future__ import annotations

import functools
import logging
import os
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import uvicorn

from modelyard.api.app import create_app
from modelyard.api.grpc import attach as attach_grpc
from modelyard.api.model_process import run_model_process
from modelyard.api.workers import ModelProcess, Worker, supervise
from modelyard.config import Settings
from modelyard.errors import ModelyardError
from modelyard.platform import Platform
from modelyard.serving.split import address_for, serve_from
from modelyard.storage.workdirs import process_dir

log = logging.getLogger("modelyard.server")


def announce_key(secret: str, from_settings: bool) -> None:
    """Print the admin key of a first start once (only its hash is stored)."""
    if from_settings:
        print("Modelyard: admin key taken from MODELYARD_BOOTSTRAP_KEY.", file=sys.stderr)
        return
    print(
        "\n  Modelyard first start: an admin API key was created. It is shown only this once:\n"
        f"\n    {secret}\n\n"
        "  Use it as 'Authorization: Bearer <key>' or export MODELYARD_API_KEY=<key>.\n",
        file=sys.stderr,
        flush=True,
    )


def build(settings: Settings) -> Platform:
    """A ready platform; on a first start, creates and announces the admin key."""
    platform = Platform.build(settings)
    bootstrap = settings.bootstrap_key.get_secret_value() if settings.bootstrap_key else None
    secret = platform.auth.bootstrap(bootstrap)
    if secret is not None:
        announce_key(secret, bootstrap is not None)
    return platform


# How long (in libgomp's spins, about 100,000 a millisecond) an idle OpenMP thread spins
# before it sleeps: long enough to catch the next operation of a forward pass, short enough
# not to hold a core between decoding steps or requests.
OPENMP_SPINS = 30_000


def bound_openmp_waits() -> None:
    """Have torch's OpenMP threads spin briefly, then sleep, between operations; before torch
    is first imported, as OpenMP reads its settings then. An operator's ``OMP_WAIT_POLICY``
    or ``GOMP_SPINCOUNT`` stands.

    A server's compute threads share the cores with its event loop, its other threads and
    often other processes. OpenMP's default (about 3 ms of spinning) lets idle threads take
    the cores the others need: on two busy cores (load average near 10) a small language model
    took 45 to 90 s for 64 tokens. Threads that never spin (``OMP_WAIT_POLICY=PASSIVE``) wait
    for a wake-up at every operation, which halved decoding on a quiet machine. A spin of
    about 0.3 ms keeps the quiet machine's speed without the collapse (docs/llm.md, Benchmark).
    """
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ["GOMP_SPINCOUNT"] = str(OPENMP_SPINS)


def tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's TLS options for ``settings`` (none without a certificate).

    Raises ModelyardError naming the file when the certificate and key do not load
    together, before anything starts.
    """
    if settings.ssl_certfile is None or settings.ssl_keyfile is None:
        return {}
    certfile, keyfile = str(settings.ssl_certfile), str(settings.ssl_keyfile)
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ModelyardError(
            f"the TLS certificate {certfile} and key {keyfile} do not load: {exc}"
        ) from None
    return {"ssl_certfile": certfile, "ssl_keyfile": keyfile}


def serve(settings: Settings) -> None:
    """Run the server in the foreground until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    bound_openmp_waits()
    try:
        tls = tls_options(settings)
    except ModelyardError as exc:
        print(f"Modelyard cannot start: {exc.detail}", file=sys.stderr)
        raise SystemExit(1) from None
    platform = build(settings)
    try:
        platform.executor.preflight()
    except ModelyardError as exc:
        platform.close()
        print(f"Modelyard cannot start: {exc.detail}", file=sys.stderr)
        raise SystemExit(1) from None
    scheme = "https" if tls else "http"
    if settings.workers > 1 or settings.serving_split:
        # The schema is migrated and the first key made once, here; each worker builds its own.
        platform.close()
        log.info(
            "Modelyard listening on %s://%s:%d with %d workers%s",
            scheme,
            settings.host,
            settings.port,
            settings.workers,
            " and a model process" if settings.serving_split else "",
        )
        worker: Worker = run_worker
        models: ModelProcess | None = None
        if settings.serving_split:
            address = address_for(process_dir(settings.tmp_dir), os.getpid())
            worker = functools.partial(run_worker, model_address=address)
            models = functools.partial(run_model_process, address)
        try:
            status = supervise(settings, worker, models)
        except OSError as exc:
            print(f"Modelyard cannot start: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        if status:
            raise SystemExit(status)
        return
    app = create_app(platform, own_platform=True)
    if settings.grpc_port:
        attach_grpc(app, platform)
    log.info("Modelyard listening on %s://%s:%d", scheme, settings.host, settings.port)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
        **tls,
    )


def run_worker(
    settings: Settings,
    index: int,
    sock: socket.socket,
    metrics_dir: Path,
    *,
    model_address: str | None = None,
) -> None:
    """One process of a server run as several (api/workers.py): worker 0 also runs jobs, the
    storage collector and gRPC. With ``model_address`` its versions are loaded in the model
    process there (serving/split.py)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    platform = Platform.build(settings, metrics_dir=metrics_dir)
    if model_address is not None:
        serve_from(platform.serving, model_address)
    leader = index == 0
    app = create_app(platform, own_platform=True, runs_jobs=leader)
    if leader and settings.grpc_port:
        attach_grpc(app, platform)
    config = uvicorn.Config(
        app,
        log_level="info",
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
        **tls_options(settings),
    )
    uvicorn.Server(config).run(sockets=[sock])
