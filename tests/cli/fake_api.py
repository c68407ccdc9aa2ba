"""A stand-in for the server behind the CLI's SDK client (an httpx.MockTransport), and a
runner for CLI commands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner, Result

from modelyard.cli.main import app
from modelyard.client import Client

Route = Callable[[httpx.Request], httpx.Response]


def page(*items: dict[str, Any]) -> Route:
    return lambda _r: httpx.Response(200, json={"items": list(items), "total": len(items)})


def answer(status: int = 200, body: Any = None, **kwargs: Any) -> Route:
    return lambda _r: httpx.Response(status, json=body, **kwargs)


@dataclass
class FakeAPI:
    """Routes ``(method, path)`` to canned answers and records what the CLI sent."""

    routes: dict[tuple[str, str], Route] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    connections: list[tuple[str, str | None]] = field(default_factory=list)
    ca_bundles: list[Path | None] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get((request.method, request.url.path))
        if route is None:
            problem = {"title": "Not found", "status": 404, "detail": "no such route"}
            return httpx.Response(404, json=problem)
        return route(request)

    def make_client(self, url: str, api_key: str | None, ca_bundle: Path | None = None) -> Client:
        self.connections.append((url, api_key))
        self.ca_bundles.append(ca_bundle)
        return Client(url, api_key, transport=httpx.MockTransport(self.handle))

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    """Invoke the CLI in-process; stdout and stderr are kept apart."""
    # A wide terminal keeps rich from wrapping table cells, which would split the values.
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250", **(env or {})})
