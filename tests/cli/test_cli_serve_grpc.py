"""``modelyard serve --grpc-port`` and ``MODELYARD_GRPC_PORT`` reach the settings."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from tests.cli.fake_api import run


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Stand in for modelyard.api.server so the test starts no server."""
    settings: list[Any] = []
    module = types.ModuleType("modelyard.api.server")
    module.serve = settings.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "modelyard.api.server", module)
    return settings


def test_grpc_is_off_unless_a_port_is_given(started: list[Any]) -> None:
    assert run("serve").exit_code == 0
    assert run("serve", env={"MODELYARD_GRPC_PORT": "8001"}).exit_code == 0
    result = run("serve", "--grpc-port", "9001", env={"MODELYARD_GRPC_PORT": "8001"})
    assert result.exit_code == 0, result.output
    assert [s.grpc_port for s in started] == [0, 8001, 9001]
    assert run("serve", "--grpc-port", "70000").exit_code == 2
    same = run("serve", "--port", "8001", "--grpc-port", "8001")
    assert same.exit_code == 1 and "a port of its own" in same.output
