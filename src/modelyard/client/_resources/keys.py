"""``client.keys``: API keys."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from modelyard.client._http import HTTP, seg
from modelyard.client._types import CreatedKey, Key


class Keys:
    """Create, list and revoke API keys."""

    def __init__(self, http: HTTP) -> None:
        self._http = http

    def create(
        self,
        name: str,
        scopes: Iterable[str],
        expires_at: datetime | None = None,
        principal: str | None = None,
        project: str | None = None,
    ) -> CreatedKey:
        """Create a key with ``scopes``: ``read``, ``write``, ``infer``, ``keys``, ``metrics``,
        ``admin``.

        ``expires_at`` without a time zone is taken as UTC. ``principal`` (a name; admin
        only) makes the key for someone else; ``project`` binds it to that project (it sees
        and changes only that project's resources). The secret is in ``.key`` and cannot be read
        again later.

        Example::

            created = client.keys.create("laptop", ["read", "write"])
            print(created.key)
        """
        # A bare string is iterable too; "read" must not become ["r", "e", "a", "d"].
        scope_list = [scopes] if isinstance(scopes, str) else list(scopes)
        body: dict[str, object] = {"name": name, "scopes": scope_list}
        if expires_at is not None:
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=UTC)
            body["expires_at"] = expires_at.isoformat()
        if principal is not None:
            body["principal"] = principal
        if project is not None:
            body["project"] = project
        return CreatedKey.from_json(self._http.object("POST", "/api/v1/keys", json=body))

    def list(self) -> list[Key]:
        """The caller's keys (an admin sees every key)."""
        return [Key.from_json(k) for k in self._http.paginate("/api/v1/keys")]

    def revoke(self, key_id: str) -> None:
        """Revoke a key; it is refused from then on."""
        self._http.send("DELETE", f"/api/v1/keys/{seg(key_id)}")
