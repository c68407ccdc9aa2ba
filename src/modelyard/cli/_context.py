"""How a command gets its SDK client, and how SDK errors become exit codes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import typer

from modelyard.cli._output import print_error
from modelyard.client import (
    APIError,
    AuthenticationError,
    Client,
    JobFailedError,
    ModelyardError,
    TransportError,
)


@dataclass(frozen=True)
class CLIState:
    """The global options, shared by every command through ``ctx.obj``."""

    url: str
    api_key: str | None
    ca_bundle: Path | None = None


def make_client(url: str, api_key: str | None, ca_bundle: Path | None = None) -> Client:
    """Build the client every command uses (tests replace this to inject a transport);
    ``ca_bundle`` is the PEM file an https:// server's certificate is checked against."""
    return Client(url, api_key, verify=ca_bundle if ca_bundle is not None else True)


@contextmanager
def reporting_errors(url: str, api_key: str | None) -> Iterator[None]:
    """Turn SDK errors raised in the block into a red message on stderr and exit 1."""
    try:
        yield
    except APIError as exc:
        message = f"Error {exc.status}: {exc.title}"
        if exc.detail:
            message += f" — {exc.detail}"
        if isinstance(exc, AuthenticationError) and not api_key:
            message += "\nHint: pass --api-key or set MODELYARD_API_KEY."
        print_error(message)
        raise typer.Exit(1) from None
    except TransportError as exc:
        print_error(f"Error: cannot reach {url}: {exc}")
        raise typer.Exit(1) from None
    except JobFailedError as exc:
        print_error(f"Error: {exc}\nIts log: modelyard jobs logs {exc.job.id}")
        raise typer.Exit(1) from None
    except ModelyardError as exc:
        print_error(f"Error: {exc}")
        raise typer.Exit(1) from None


@contextmanager
def connect(ctx: typer.Context) -> Iterator[Client]:
    """Yield a client for the command; turn SDK errors into a red message and exit 1."""
    state = ctx.find_object(CLIState)
    if state is None:
        raise RuntimeError("the root callback did not run; invoke commands through the app")
    with (
        reporting_errors(state.url, state.api_key),
        make_client(state.url, state.api_key, state.ca_bundle) as client,
    ):
        yield client
