"""The audit trail: one row per change, written in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from modelyard.auth.access import Caller
from modelyard.db.tables import AuditEntry


def record(
    session: Session,
    caller: Caller | None,
    action: str,
    resource: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append an audit entry (committed or rolled back with the surrounding change)."""
    session.add(
        AuditEntry(
            principal_id=caller.principal_id if caller else None,
            action=action,
            resource=resource,
            detail=detail or {},
        )
    )
