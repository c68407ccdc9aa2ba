"""The one place that talks HTTP: auth header, error mapping, JSON, pages and streams."""

from __future__ import annotations

import hashlib
import os
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import quote

import httpx

from modelyard.client._exceptions import ModelyardError, TransportError, error_from_response
from modelyard.client._transfer import (
    FileUpload,
    MultipartUpload,
    ProgressCallback,
    report,
    target_path,
    write_atomically,
)

Verify: TypeAlias = bool | str | os.PathLike[str] | ssl.SSLContext
"""How the server's TLS certificate is checked: True (the usual CAs), a CA bundle's path
(a PEM file), an ``ssl.SSLContext``, or False (not at all: tests only)."""

PAGE_SIZE = 100
SHA256_HEADER = "x-modelyard-sha256"
USER_AGENT = "modelyard-python"


def seg(value: str | int) -> str:
    """One URL path segment, percent-encoded (a name can never reach another route)."""
    return quote(str(value), safe="")


def ssl_verify(verify: Verify) -> bool | ssl.SSLContext:
    """``verify`` as httpx takes it: a CA bundle's path becomes a context trusting it."""
    if isinstance(verify, bool | ssl.SSLContext):
        return verify
    path = Path(verify)
    if not path.is_file():
        raise ModelyardError(f"verify: no CA bundle at {path} (a PEM file of certificates)")
    try:
        return ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        raise ModelyardError(f"verify: {path} is not a PEM CA bundle: {exc}") from None


def transport_error(method: str, exc: httpx.RequestError) -> TransportError:
    """A :class:`TransportError` for a request that got no answer, with what to do when it
    is a TLS mismatch (an untrusted certificate, plain HTTP to a TLS port, or the reverse)."""
    url = exc.request.url
    text = str(exc) or type(exc).__name__
    hint = ""
    if "CERTIFICATE_VERIFY_FAILED" in text:
        hint = (
            "the server's TLS certificate is not trusted: pass its CA bundle "
            "(Client(..., verify='ca.pem'); modelyard --ca-bundle or MODELYARD_CA_BUNDLE)"
        )
    elif "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        hint = "the server does not speak TLS here: use an http:// URL"
    elif url.scheme == "http" and isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        hint = (
            "the server closed the connection without answering; if it serves TLS "
            "(modelyard serve --ssl-certfile), use an https:// URL"
        )
    message = f"{method} {url}: {text}"
    return TransportError(f"{message} — {hint}" if hint else message)


def _params(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Query parameters without the ``None`` ones (absent means 'server default')."""
    if params is None:
        return None
    return {k: v for k, v in params.items() if v is not None}


class HTTP:
    """A thin layer over :class:`httpx.Client` shared by every resource of a Client."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float | None,
        transport: httpx.BaseTransport | None,
        verify: Verify = True,
    ) -> None:
        headers = {"User-Agent": USER_AGENT}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.verify = ssl_verify(verify)
        self.client = httpx.Client(
            base_url=base_url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            verify=self.verify,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | Iterator[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request; raise :class:`APIError` on 4xx/5xx, :class:`TransportError` if
        no answer came."""
        try:
            response = self.client.request(
                method, path, params=_params(params), json=json, content=content, headers=headers
            )
        except httpx.RequestError as exc:
            raise transport_error(method, exc) from exc
        if response.is_error:
            raise error_from_response(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and decode its JSON answer (``None`` for an empty answer)."""
        response = self.send(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ModelyardError(
                f"{method} {path}: the server answered {response.status_code} with a body "
                "that is not JSON"
            ) from exc

    def object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Like :meth:`json`, for answers that must be a JSON object."""
        body = self.json(method, path, **kwargs)
        if not isinstance(body, dict):
            raise ModelyardError(f"{method} {path}: expected a JSON object, got {body!r:.200}")
        return body

    def text(self, method: str, path: str, **kwargs: Any) -> str:
        """Send a request and return its answer as text."""
        return self.send(method, path, **kwargs).text

    @contextmanager
    def stream(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> Iterator[httpx.Response]:
        """GET ``path`` and yield the answer unread; raise :class:`APIError` on 4xx/5xx.

        Network failures propagate as :class:`httpx.TransportError`, unwrapped, so that a
        caller following a long stream can tell a dropped connection apart and reconnect.
        """
        with self.client.stream(
            "GET",
            path,
            params=_params(params),
            headers=headers,
            timeout=timeout if timeout is not None else self.client.timeout,
        ) as response:
            if response.is_error:
                response.read()
                raise error_from_response(response)
            yield response

    def paginate(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """Yield every item of a ``{"items", "total"}`` list, page after page."""
        offset = 0
        while True:
            page = self.object(
                "GET", path, params={**(params or {}), "limit": PAGE_SIZE, "offset": offset}
            )
            items = page.get("items")
            if not isinstance(items, list):
                raise ModelyardError(f"GET {path}: the answer has no 'items' list")
            yield from items
            offset += len(items)
            total = page.get("total")
            # An empty page ends the walk even if 'total' is stale (items deleted meanwhile).
            if not items or not isinstance(total, int) or offset >= total:
                return

    def upload(
        self,
        path: str,
        body: FileUpload | MultipartUpload,
        *,
        params: Mapping[str, Any] | None = None,
        progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """POST a streamed body with an exact ``Content-Length``; return the JSON answer."""
        headers = {"Content-Type": body.content_type, "Content-Length": str(body.size)}
        content = report(body.chunks(), body.size, progress)
        return self.object("POST", path, params=params, content=content, headers=headers)

    def download(
        self, path: str, dest: Path, fallback_name: str, progress: ProgressCallback | None
    ) -> Path:
        """Stream a GET answer to ``dest`` (or into it, if a directory); return the file."""
        try:
            with self.client.stream("GET", path) as response:
                if response.is_error:
                    response.read()
                    raise error_from_response(response)
                target = target_path(
                    dest, response.headers.get("content-disposition"), fallback_name
                )
                length = response.headers.get("content-length")
                total = int(length) if length and length.isdigit() else None

                reported = 0

                def tick() -> None:
                    # Bytes on the wire, the same measure as Content-Length even if encoded;
                    # re-chunking can leave it unchanged, and a repeat tells the caller nothing.
                    nonlocal reported
                    if progress is not None and response.num_bytes_downloaded > reported:
                        reported = response.num_bytes_downloaded
                        progress(reported, total)

                if progress is not None:
                    progress(0, total)
                expected = response.headers.get(SHA256_HEADER)
                chunks = response.iter_bytes()
                if expected:
                    chunks = _verified(chunks, expected.lower(), path)
                return write_atomically(target, chunks, tick)
        except httpx.RequestError as exc:
            raise transport_error("GET", exc) from exc


def _verified(chunks: Iterator[bytes], expected: str, path: str) -> Iterator[bytes]:
    """Pass ``chunks`` through; fail at the end if their sha256 is not ``expected``."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
        yield chunk
    if digest.hexdigest() != expected:
        # Raised before the .part file is renamed, so a corrupt download never lands.
        raise ModelyardError(
            f"GET {path}: the download's sha256 is {digest.hexdigest()}, the server announced "
            f"{expected}"
        )
