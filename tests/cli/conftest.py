"""The CLI's tests get a fake API (unit tests) or a live server (integration tests)."""

from __future__ import annotations

import pytest

from modelyard.cli import _context
from tests.cli.fake_api import FakeAPI


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeAPI:
    """Every command's client talks to a :class:`FakeAPI`."""
    fake = FakeAPI()
    monkeypatch.setattr(_context, "make_client", fake.make_client)
    for name in ("MODELYARD_URL", "MODELYARD_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return fake
