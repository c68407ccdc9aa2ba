"""``client.principals``: users and service accounts (admin only)."""

from __future__ import annotations

from modelyard.client._http import HTTP
from modelyard.client._types import Principal


class Principals:
    """Create and list principals; both need an admin key."""

    def __init__(self, http: HTTP) -> None:
        self._http = http

    def create(self, name: str, kind: str = "user", is_admin: bool = False) -> Principal:
        """Create a principal; ``kind`` is ``"user"`` or ``"service"``.

        Example::

            bot = client.principals.create("ci-bot", kind="service")
            key = client.keys.create("ci", ["read", "write"], principal=bot.name)
        """
        body = {"name": name, "kind": kind, "is_admin": is_admin}
        return Principal.from_json(self._http.object("POST", "/api/v1/principals", json=body))

    def list(self) -> list[Principal]:
        """Every principal on the server."""
        return [Principal.from_json(p) for p in self._http.paginate("/api/v1/principals")]
