"""``/docs`` works without reaching the Internet: every asset its page loads is served by
the server itself, from files the package ships."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import httpx

from tests.support.server import LiveServer


def test_docs_reference_only_same_origin_assets_that_answer(server: LiveServer) -> None:
    page = httpx.get(f"{server.url}/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""", page.text)
    found = {a or b for a, b in urls}
    assert {"/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"} <= found, found
    assert "/openapi.json" in found
    for url in found:
        absolute = urljoin(f"{server.url}/docs", url)
        assert urlsplit(absolute).netloc == urlsplit(server.url).netloc, url
        reply = httpx.get(absolute)
        assert reply.status_code == 200, (url, reply.status_code)
    script = httpx.get(f"{server.url}/docs/static/swagger-ui-bundle.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert len(script.content) > 500_000  # the real bundle, not a placeholder
    assert httpx.get(f"{server.url}/docs/oauth2-redirect").status_code == 200
    # Only the page's assets are served, and no CDN-backed ReDoc page is left.
    assert httpx.get(f"{server.url}/docs/static/LICENSE").status_code == 404
    assert httpx.get(f"{server.url}/docs/static/..%2Fdocs.py").status_code == 404
    assert httpx.get(f"{server.url}/redoc").status_code == 404


def test_the_assets_are_package_data() -> None:
    import tomllib
    from pathlib import Path

    from modelyard.api.docs import ASSETS, MEDIA_TYPES

    for name in (*MEDIA_TYPES, "LICENSE", "NOTICE"):
        assert (ASSETS / name).is_file(), name
    root = Path(__file__).resolve().parents[2]
    data = tomllib.loads((root / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["modelyard"]
    relative = ASSETS.relative_to(root / "src" / "modelyard").as_posix()
    assert f"{relative}/*" in globs
