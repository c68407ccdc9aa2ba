"""The :class:`Client`: one connection pool, one API key, one attribute per resource."""

from __future__ import annotations

from types import TracebackType

import httpx

from modelyard.client._http import HTTP
from modelyard.client._resources import Datasets, Keys, Models, Principals
from modelyard.client._types import WhoAmI


class Client:
    """A connection to a Modelyard server.

    ``transport`` replaces httpx's network transport (tests pass an
    :class:`httpx.MockTransport` or :class:`httpx.ASGITransport`). ``timeout`` is in
    seconds per network operation (connect, each read, each write), not per transfer, so
    large uploads and downloads are not cut short; ``None`` waits forever.

    Example::

        from modelyard import Client

        with Client("http://127.0.0.1:8000", api_key="my_...") as client:
            print(client.whoami().principal.name)
            client.datasets.push("digits", "digits.csv", label="target")
            for model in client.models.list():
                print(model.name, model.latest_version)
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float | None = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = HTTP(base_url, api_key, timeout=timeout, transport=transport)
        self.principals = Principals(self._http)
        """Users and service accounts (admin only)."""
        self.keys = Keys(self._http)
        """API keys."""
        self.datasets = Datasets(self._http)
        """Data sets."""
        self.models = Models(self._http)
        """The model registry: models, versions, aliases."""

    @property
    def base_url(self) -> str:
        """The server's address, as given."""
        return str(self._http.client.base_url)

    def whoami(self) -> WhoAmI:
        """The principal and the key this client is authenticated as."""
        return WhoAmI.from_json(self._http.object("GET", "/api/v1/whoami"))

    def close(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"
