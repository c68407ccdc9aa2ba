"""One live server per module with the tiny chat model (and MiniLM) deployed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.llm.tiny import build_tiny_lm, tar_folder
from tests.support.server import LiveServer, live_server

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def push_hf(api: httpx.Client, name: str, archive: bytes, filename: str = "m.tar.gz") -> int:
    if api.get(f"/api/v1/models/{name}").status_code == 404:
        api.post("/api/v1/models", json={"name": name}).raise_for_status()
    reply = api.post(
        f"/api/v1/models/{name}/versions", params={"filename": filename}, content=archive
    )
    assert reply.status_code == 201, reply.text
    version: int = reply.json()["version"]
    return version


def deploy(api: httpx.Client, name: str, model: str, **spec: object) -> None:
    reply = api.post("/api/v1/deployments", json={"name": name, "model": model, **spec})
    assert reply.status_code == 201, reply.text
    assert reply.json()["status"] == "ready", reply.json()


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from modelyard.config import Settings

    root = tmp_path_factory.mktemp("llm-server")
    with live_server(Settings(data_dir=root / "data")) as srv:
        yield srv


@pytest.fixture(scope="module")
def admin(llm_server: LiveServer) -> Iterator[httpx.Client]:
    auth = {"Authorization": f"Bearer {llm_server.admin_key}"}
    with httpx.Client(base_url=llm_server.url, headers=auth, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny") / "tiny", positions=64)


@pytest.fixture(scope="module")
def tiny_deployed(admin: httpx.Client, tiny_folder: Path) -> str:
    push_hf(admin, "tiny", tar_folder(tiny_folder))
    deploy(admin, "tiny", "tiny", max_batch_size=8, max_queue=64)
    return "tiny"


@pytest.fixture(scope="module")
def tools_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The byte-level tiny model whose chat template renders tools (Hermes format)."""
    return build_tiny_lm(
        tmp_path_factory.mktemp("tools") / "tools", tools=True, positions=512, width=64
    )


@pytest.fixture(scope="module")
def tools_deployed(admin: httpx.Client, tools_folder: Path) -> str:
    push_hf(admin, "tiny-tools", tar_folder(tools_folder))
    deploy(admin, "tiny-tools", "tiny-tools", max_batch_size=8, max_queue=64)
    return "tiny-tools"
