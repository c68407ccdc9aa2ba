"""The README's commands work as written: ``make serve``, then the quick start, line by line."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.process import wait_healthy
from tests.support.server import ADMIN_KEY, free_port

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _block(heading: str, lang: str) -> str:
    section = README.split(f"## {heading}", 1)[1]
    match = re.search(rf"```{lang}\n(.*?)```", section, re.S)
    assert match, f"no {lang} block under '{heading}'"
    return match.group(1)


def test_readme_opens_with_the_two_commands() -> None:
    first = re.search(r"```bash\n(.*?)```", README, re.S)
    assert first is not None
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    assert commands == ["make serve", "make test"]


@pytest.mark.slow
def test_make_serve_then_the_quick_start(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.fail("make is not installed")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "MODELYARD_DATA_DIR": str(tmp_path / "data"),
        "MODELYARD_BOOTSTRAP_KEY": ADMIN_KEY,
    }
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        ["make", "-s", "serve", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_healthy(url, server, timeout=300)
        work = tmp_path / "work"  # empty: the quick start makes its own files
        work.mkdir()
        shell_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        lines = [
            line
            for line in _block("Quick start", "bash").splitlines()
            if line.strip() and not line.startswith("#")
        ]
        script = []
        for line in lines:
            line = line.split("  #")[0]
            line = line.replace("http://127.0.0.1:8000", url).replace("my_...", ADMIN_KEY)
            script.append(line)
        for i in range(len(script)):
            # Each command runs with the exports before it, and must succeed on its own.
            if script[i].startswith("export"):
                continue
            prelude = "\n".join(s for s in script[:i] if s.startswith("export"))
            done = subprocess.run(
                ["bash", "-ec", prelude + "\n" + script[i]],
                cwd=work,
                env=shell_env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, (script[i], done.stdout, done.stderr)
        assert (work / "pulled.safetensors").read_bytes() == (
            work / "model.safetensors"
        ).read_bytes()

        code = _block("Quick start", "python")
        code = code.replace("http://127.0.0.1:8000", url).replace("my_...", ADMIN_KEY)
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def test_the_cluster_section_names_real_settings_and_flags() -> None:
    from modelyard.config import Settings

    block = _block("Running on a cluster (PostgreSQL + S3 + Ray)", "bash")
    names = set(re.findall(r"MODELYARD_([A-Z0-9_]+)=", block))
    assert {"EXECUTOR", "RAY_ADDRESS", "DATABASE_URL", "BLOB_STORE"} <= names
    fields = {name.upper() for name in Settings.model_fields}
    assert names <= fields, names - fields
    serve = next(line for line in block.splitlines() if "modelyard serve" in line)
    flags = re.findall(r"--[a-z-]+", serve)
    helped = subprocess.run(
        [sys.executable, "-m", "modelyard", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    assert all(flag in helped for flag in flags), flags
    ray_lines = [line for line in block.splitlines() if line.startswith(".venv/bin/ray start")]
    assert len(ray_lines) == 2
    ray_help = subprocess.run(
        [str(Path(sys.executable).with_name("ray")), "start", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in ray_lines:
        for flag in re.findall(r"--[a-z-]+", line):
            assert flag in ray_help, flag
