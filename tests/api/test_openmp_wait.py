"""The server has torch's OpenMP threads spin briefly, then sleep, unless told otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from modelyard.api.server import OPENMP_SPINS, bound_openmp_waits


def test_openmp_threads_spin_briefly_then_sleep_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    bound_openmp_waits()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert os.environ["GOMP_SPINCOUNT"] == str(OPENMP_SPINS)


@pytest.mark.parametrize(
    ("name", "value"), [("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "0")]
)
def test_an_operators_setting_stands(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.setenv(name, value)
    bound_openmp_waits()
    assert os.environ[name] == value
    (other,) = {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} - {name}
    assert other not in os.environ


def test_the_setting_is_made_before_the_server_imports_torch() -> None:
    # OpenMP reads its settings once, when torch loads it: the server module must not load it.
    code = "import sys, modelyard.api.server; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
