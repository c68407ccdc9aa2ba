"""``modelyard serve --workers`` and ``--model-process`` (and their MODELYARD_* variables) reach
the settings."""

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


def test_one_process_unless_workers_are_asked_for(started: list[Any]) -> None:
    assert run("serve").exit_code == 0
    assert run("serve", env={"MODELYARD_WORKERS": "2"}).exit_code == 0
    result = run("serve", "--workers", "3", env={"MODELYARD_WORKERS": "2"})
    assert result.exit_code == 0, result.output
    assert [s.workers for s in started] == [1, 2, 3]
    assert run("serve", "--workers", "0").exit_code == 2
    refused = run("serve", env={"MODELYARD_WORKERS": "0"})
    assert refused.exit_code == 1 and "workers" in refused.output


def test_a_model_process_only_when_asked_for(started: list[Any]) -> None:
    assert run("serve", "--workers", "2").exit_code == 0
    assert run("serve", "--workers", "2", "--model-process").exit_code == 0
    assert run("serve", env={"MODELYARD_SERVING_SPLIT": "1"}).exit_code == 0
    result = run("serve", "--no-model-process", env={"MODELYARD_SERVING_SPLIT": "1"})
    assert result.exit_code == 0, result.output
    assert [s.serving_split for s in started] == [False, True, True, False]
