"""``modelyard serve``: run the API server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from modelyard.cli._output import print_error


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind [env MODELYARD_HOST; default 127.0.0.1].")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Port to bind [env MODELYARD_PORT; default 8000]."),
    ] = None,
    grpc_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Port of the Open Inference Protocol over gRPC, on the same host "
            "[env MODELYARD_GRPC_PORT; default 0: off].",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Server processes on host:port, each serving every deployment "
            "[env MODELYARD_WORKERS; default 1].",
        ),
    ] = None,
    model_process: Annotated[
        bool | None,
        typer.Option(
            "--model-process/--no-model-process",
            help="Load the models once, in one model process that batches for every server "
            "process; the server processes only parse, check keys and forward tensors "
            "[env MODELYARD_SERVING_SPLIT; default off: each process holds its own copy].",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(file_okay=False, help="Where data lives [env MODELYARD_DATA_DIR]."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL [env MODELYARD_DATABASE_URL; default SQLite]."),
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(help="Where jobs run: local or ray [env MODELYARD_EXECUTOR; default local]."),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster, host:port of its head [env MODELYARD_RAY_ADDRESS]."),
    ] = None,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="PEM certificate: serve HTTPS (and gRPC over TLS) with --ssl-keyfile "
            "[env MODELYARD_SSL_CERTFILE].",
        ),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="PEM private key of --ssl-certfile [env MODELYARD_SSL_KEYFILE].",
        ),
    ] = None,
) -> None:
    """Run the Modelyard server. Flags override MODELYARD_* environment variables."""
    # Imported here: the server stack (FastAPI, SQLAlchemy, torch) is heavy and only this
    # command needs it.
    from pydantic import ValidationError

    from modelyard.config import Settings

    flags = {
        "host": host,
        "port": port,
        "grpc_port": grpc_port,
        "workers": workers,
        "serving_split": model_process,
        "data_dir": data_dir,
        "database_url": database_url,
        "executor": executor,
        "ray_address": ray_address,
        "ssl_certfile": ssl_certfile,
        "ssl_keyfile": ssl_keyfile,
    }
    overrides: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print_error(f"Error: invalid settings:\n{exc}")
        raise typer.Exit(1) from None

    from modelyard.api.server import serve as run_server

    run_server(settings)
