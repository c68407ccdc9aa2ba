"""Errors the SDK raises, one tree::

    ModelyardError                  anything the SDK raises on purpose
    ├── TransportError              the request did not complete (connect, timeout, protocol)
    ├── JobFailedError              a job waited for ended failed or cancelled (job, error)
    ├── JobTimeoutError             Job.wait(timeout=...) gave up; also a TimeoutError
    └── APIError                    the server answered 4xx/5xx (status, title, detail, body)
        ├── AuthenticationError     401: missing, unknown, expired or revoked API key
        ├── PermissionDeniedError   403: the key lacks the scope
        ├── NotFoundError           404: no such resource, or one the caller may not read
        ├── ConflictError           409: the name is taken, or the state forbids the change
        ├── PayloadTooLargeError    413
        ├── UnsupportedMediaTypeError  415: format not recognised or not allowed
        ├── ValidationError         422: the request or the uploaded data is invalid
        ├── RateLimitError          429: retry after ``retry_after`` seconds
        └── ServerError             5xx

Other 4xx answers raise :class:`APIError` itself. Error bodies are RFC 9457 problem+json
(``type``, ``title``, ``status``, ``detail``); :func:`error_from_response` also copes with
plain-text, FastAPI-style ``{"detail": ...}`` and Open Inference Protocol ``{"error": ...}``
bodies.
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from modelyard.client._job import Job


class ModelyardError(Exception):
    """Base of every error the SDK raises on purpose."""


class TransportError(ModelyardError):
    """The request did not complete: connection refused, timeout, broken stream.

    The underlying :class:`httpx.RequestError` is chained as ``__cause__``.
    """


class JobFailedError(ModelyardError):
    """A job ended ``failed`` or ``cancelled`` while the SDK waited for it.

    Like :class:`APIError` it has a ``title`` and a ``detail`` (the job's error); ``body``
    is the job's JSON. The request that submitted the job succeeded, so this is not an
    :class:`APIError`.

    Attributes:
        job: the job in its final state.
        job_status: ``failed`` or ``cancelled``.
        error: what the server recorded as the reason (``None`` for a plain cancel).
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.job_status = job.status
        self.error = job.error
        self.title = f"Job {job.status}"
        self.detail = job.error or ""
        self.body: dict[str, Any] = dict(job.raw)
        message = f"job {job.id} {job.status}"
        super().__init__(f"{message}: {job.error}" if job.error else message)


class JobTimeoutError(ModelyardError, TimeoutError):
    """:meth:`Job.wait` gave up after its ``timeout``; the job itself goes on.

    ``job`` is its state when the wait ended; ``job.cancel()`` stops it.
    """

    def __init__(self, job: Job, timeout: float) -> None:
        self.job = job
        self.timeout = timeout
        super().__init__(f"job {job.id} is still {job.status} after {timeout:g} s")


class APIError(ModelyardError):
    """The server answered with an error status.

    Attributes:
        status: the HTTP status code.
        title: short summary of the problem type (problem+json ``title``).
        detail: what went wrong with this request (problem+json ``detail``); may be empty.
        problem_type: the problem+json ``type`` URI, or ``None``.
        body: the decoded JSON error body, or the body text when it was not JSON.
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        body: dict[str, Any] | str = "",
        problem_type: str | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.body = body
        self.problem_type = problem_type
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")


class AuthenticationError(APIError):
    """401: the API key is missing, unknown, expired or revoked."""


class PermissionDeniedError(APIError):
    """403: the API key lacks the scope the operation needs."""


class NotFoundError(APIError):
    """404: the resource does not exist, or the caller may not read it."""


class ConflictError(APIError):
    """409: the name is already taken, or the resource's state forbids the change."""


class PayloadTooLargeError(APIError):
    """413: the upload exceeds the server's limit."""


class UnsupportedMediaTypeError(APIError):
    """415: the format was not recognised or is not accepted."""


class ValidationError(APIError):
    """422: the request, the spec or the uploaded data is invalid."""


class RateLimitError(APIError):
    """429: the server is overloaded; ``retry_after`` says how many seconds to wait."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        body: dict[str, Any] | str = "",
        problem_type: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, title, detail, body, problem_type)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the server failed; a 500 is a server bug worth reporting."""


_BY_STATUS: dict[int, type[APIError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: ValidationError,
}


def error_from_response(response: httpx.Response) -> APIError:
    """Build the :class:`APIError` subclass for an error response whose body has been read."""
    status = response.status_code
    body: dict[str, Any] | str
    try:
        decoded = response.json()
    except (ValueError, UnicodeDecodeError):
        decoded = None
    if isinstance(decoded, dict):
        body = decoded
        title = str(decoded.get("title") or response.reason_phrase or "Error")
        # Open Inference Protocol routes answer {"error": message}.
        detail = _detail_text(decoded.get("detail", decoded.get("error")))
        problem_type = decoded.get("type") if isinstance(decoded.get("type"), str) else None
    else:
        body = response.text
        title = response.reason_phrase or "Error"
        detail = body.strip()
        problem_type = None
    if status == 429:
        retry_after = _retry_after(response.headers.get("retry-after"))
        return RateLimitError(status, title, detail, body, problem_type, retry_after)
    cls = ServerError if status >= 500 else _BY_STATUS.get(status, APIError)
    return cls(status, title, detail, body, problem_type)


def _detail_text(detail: object) -> str:
    if detail is None:
        return ""
    if isinstance(detail, str):
        return detail
    # FastAPI's request-validation errors: [{"loc": [...], "msg": ..., "type": ...}, ...]
    if isinstance(detail, list) and all(isinstance(d, dict) and "msg" in d for d in detail):
        return "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', []))}: {d['msg']}".lstrip(": ") for d in detail
        )
    return json.dumps(detail)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait, from a ``Retry-After`` header in either of its two forms."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
