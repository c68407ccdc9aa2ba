"""The server has torch's OpenMP threads sleep between operations unless told otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from modelyard.api.server import wait_passively


def test_openmp_threads_wait_passively_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    wait_passively()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_an_operators_wait_policy_stands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    wait_passively()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_the_policy_is_set_before_the_server_imports_torch() -> None:
    # OpenMP reads the policy once, when torch loads it: the server module must not load it.
    code = "import sys, modelyard.api.server; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
