"""Virtual environments for the peer servers, each its own, made on first use.

    python = peer_python("torchserve")   # .bench-venvs/torchserve/bin/python

Each peer gets ``.bench-venvs/<name>`` (git-ignored): ``torch==2.13.0`` is installed first,
so that pip takes the local CPU wheel, then the peer and what its handler needs, with torch
held by ``constraints.txt``. The handlers build the model with ``modelyard.nn`` from
``src/`` (on ``PYTHONPATH``), which needs only torch, pydantic and safetensors, so the peers
serve the very module the benchmark checks against. A venv whose install fails (offline, a
missing wheel) raises :class:`PeerUnavailable` with pip's last line; the benchmark prints it
and goes on without that peer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
VENVS = ROOT / ".bench-venvs"
TORCH = "torch==2.13.0"
HANDLER_NEEDS = ("safetensors", "pydantic", "numpy")


class PeerUnavailable(Exception):
    """A peer could not be installed or started; the message says why."""


@dataclass(frozen=True)
class PeerEnv:
    """What one peer's venv holds, and the import that proves it works."""

    name: str
    packages: tuple[str, ...]
    imports: str

    @property
    def path(self) -> Path:
        return VENVS / self.name

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def stamp(self) -> str:
        """What the venv's marker file holds once everything is installed."""
        return " ".join([TORCH, *self.packages, *HANDLER_NEEDS])


PEERS = {
    "torchserve": PeerEnv(
        "torchserve",
        # TorchServe 0.12 imports yaml without declaring it.
        ("torchserve==0.12.0", "torch-model-archiver==0.12.0", "pyyaml"),
        "import ts, model_archiver, yaml",
    ),
    "litserve": PeerEnv("litserve", ("litserve==0.2.19",), "import litserve"),
}


def install_steps(env: PeerEnv) -> list[list[str]]:
    """The commands that make ``env`` from nothing."""
    pip = [str(env.python), "-m", "pip", "install", "-q", "--retries", "1", "--timeout", "30"]
    return [
        [sys.executable, "-m", "venv", "--clear", str(env.path)],
        [*pip, TORCH],
        [*pip, "-c", str(ROOT / "constraints.txt"), *env.packages, *HANDLER_NEEDS],
    ]


def peer_python(name: str) -> Path:
    """The interpreter of peer ``name``'s venv, made (once) when missing or incomplete."""
    env = PEERS[name]
    marker = env.path / ".installed"
    if marker.exists() and marker.read_text() == env.stamp and env.python.exists():
        return env.python
    if os.environ.get("MODELYARD_BENCH_NO_INSTALL"):
        raise PeerUnavailable(f"{env.path} is not installed (MODELYARD_BENCH_NO_INSTALL is set)")
    print(f"installing {name} into {env.path} (once, a few minutes) ...")
    sys.stdout.flush()
    VENVS.mkdir(exist_ok=True)
    for step in install_steps(env):
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PeerUnavailable(f"install failed: {exc}") from None
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise PeerUnavailable(f"install failed: {' '.join(last)[:160]}")
    check = [str(env.python), "-c", f"import torch, safetensors, pydantic; {env.imports}"]
    done = subprocess.run(check, capture_output=True, text=True)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:]
        raise PeerUnavailable(f"{name} does not import: {' '.join(last)[:160]}")
    marker.write_text(env.stamp)
    return env.python
