"""Reading and writing a resource's ACL, the same for data sets and models."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from modelyard.client._http import HTTP
from modelyard.client._types import ACL, Grant

GrantLike = Grant | Mapping[str, str]
"""A :class:`Grant` or its wire form ``{"principal": name, "permission": "read"|"write"}``."""


def get_acl(http: HTTP, path: str) -> ACL:
    """GET ``path`` as an ACL."""
    return ACL.from_json(http.object("GET", path))


def set_acl(http: HTTP, path: str, public: bool, grants: Iterable[GrantLike]) -> ACL:
    """PUT the whole ACL at ``path``: it replaces the previous one."""
    entries = [g.to_json() if isinstance(g, Grant) else dict(g) for g in grants]
    return ACL.from_json(http.object("PUT", path, json={"public": public, "grants": entries}))
