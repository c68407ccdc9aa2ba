"""A live server and a real Chromium (Debian's, driven by Playwright) for the dashboard tests."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.config import Settings
from tests.support.server import LiveServer, live_server

CHROMIUM = os.environ.get("MODELYARD_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("ui") / "data",
        executor_slots=2,
        job_heartbeat_timeout_s=10,
    )
    with live_server(settings) as srv:
        yield srv


@pytest.fixture(scope="module")
def admin(server: LiveServer) -> Iterator[httpx.Client]:
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=120) as client:
        yield client


def new_user(admin: httpx.Client, name: str, scopes: list[str]) -> str:
    """A principal ``name`` and a key for it; returns the key."""
    assert admin.post("/api/v1/principals", json={"name": name}).status_code == 201
    reply = admin.post("/api/v1/keys", json={"name": "k", "scopes": scopes, "principal": name})
    assert reply.status_code == 201, reply.text
    key: str = reply.json()["key"]
    return key


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


@contextlib.contextmanager
def signed_in(url: str, key: str) -> Iterator[httpx.Client]:
    """A plain HTTP client signed in to the dashboard through its sign-in form."""
    with httpx.Client(base_url=url, timeout=120, follow_redirects=False) as client:
        page = client.get("/ui/login")
        data = {"key": key, "csrf": csrf_of(page.text), "next": "/ui"}
        reply = client.post("/ui/login", data=data)
        assert reply.status_code == 303, reply.text
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless Chromium for the module (the system's: Playwright's download is not
    reachable here)."""
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (make test does)")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


def shot(page: object, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/ui/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path
