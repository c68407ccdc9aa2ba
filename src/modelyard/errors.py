"""One exception tree for the whole server.

Each class carries the HTTP status it maps to; only the API layer turns them into
responses (RFC 9457 problem+json)::

    ModelyardError (500)
    ├── InvalidInput (422)        bad data, spec or artifact; names the problem
    │   ├── UnsupportedFormat (415)
    │   └── UnsafeArtifact (422)  pickle, path traversal, links, size bombs
    ├── PayloadTooLarge (413)
    ├── Unauthenticated (401)
    ├── Forbidden (403)           the key lacks the scope
    ├── NotFound (404)            also what a caller sees for resources it may not read
    ├── Conflict (409)
    ├── TooManyRequests (429)
    │   ├── RateLimited (429)     over a key's or project's requests or tokens per minute
    │   └── QuotaExceeded (429)   over a job or storage quota (names it)
    ├── BudgetSpent (402)         a project's hard budget is spent
    ├── DeadlineExceeded (504)
    └── Unavailable (503)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, ClassVar


class ModelyardError(Exception):
    """Base of every error the server raises on purpose."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    type_slug: ClassVar[str] = "internal"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        # Headers the answer carries besides the body (rate-limit state, Retry-After).
        self.headers: dict[str, str] = {}


class InvalidInput(ModelyardError):
    status = 422
    title = "Invalid input"
    type_slug = "invalid-input"


class UnsupportedFormat(InvalidInput):
    status = 415
    title = "Unsupported format"
    type_slug = "unsupported-format"


class UnsafeArtifact(InvalidInput):
    title = "Unsafe artifact"
    type_slug = "unsafe-artifact"


class PayloadTooLarge(ModelyardError):
    status = 413
    title = "Payload too large"
    type_slug = "payload-too-large"


class Unauthenticated(ModelyardError):
    status = 401
    title = "Unauthenticated"
    type_slug = "unauthenticated"


class Forbidden(ModelyardError):
    status = 403
    title = "Forbidden"
    type_slug = "forbidden"


class NotFound(ModelyardError):
    status = 404
    title = "Not found"
    type_slug = "not-found"


class Conflict(ModelyardError):
    status = 409
    title = "Conflict"
    type_slug = "conflict"


class TooManyRequests(ModelyardError):
    status = 429
    title = "Too many requests"
    type_slug = "too-many-requests"


class RateLimited(TooManyRequests):
    """Over a requests- or tokens-per-minute limit; ``headers`` say which and until when."""

    title = "Rate limit reached"
    type_slug = "rate-limited"

    def __init__(self, detail: str, headers: dict[str, str], **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers = headers


class QuotaExceeded(TooManyRequests):
    """Over a quota (running jobs, compute-seconds, stored bytes); ``quota`` names it."""

    title = "Quota exceeded"
    type_slug = "quota-exceeded"


class BudgetSpent(ModelyardError):
    status = 402
    title = "Budget spent"
    type_slug = "budget-spent"


class DeadlineExceeded(ModelyardError):
    status = 504
    title = "Deadline exceeded"
    type_slug = "deadline-exceeded"


class Unavailable(ModelyardError):
    status = 503
    title = "Unavailable"
    type_slug = "unavailable"


# A path goes on until whitespace, a quote or a bracket: what libraries put around one.
_PATH_TAIL = r"[^\s'\"()\[\]{}<>,;]*"


def without_paths(text: str, roots: Iterable[str]) -> str:
    """``text`` with every path under one of ``roots`` (the data dir, temp dirs) replaced by
    ``<server file>``: libraries name the files they fail on, and those names are the
    server's business, not the caller's."""
    for root in sorted({r.rstrip("/") for r in roots if r and r.strip("/")}, key=len)[::-1]:
        text = re.sub(re.escape(root) + _PATH_TAIL, "<server file>", text)
    return text


__all__ = [
    "BudgetSpent",
    "Conflict",
    "DeadlineExceeded",
    "Forbidden",
    "InvalidInput",
    "ModelyardError",
    "NotFound",
    "PayloadTooLarge",
    "QuotaExceeded",
    "RateLimited",
    "TooManyRequests",
    "Unauthenticated",
    "Unavailable",
    "UnsafeArtifact",
    "UnsupportedFormat",
    "without_paths",
]
