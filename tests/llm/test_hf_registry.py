"""Hugging Face folders in the registry: what is accepted and what is refused."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from modelyard.errors import InvalidInput, UnsafeArtifact
from modelyard.registry.artifacts import inspect_artifact
from tests.llm.tiny import build_tiny_lm, tar_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("hf") / "tiny")


def inspect(data: bytes, tmp: Path, name: str = "m.tar.gz", fmt: str | None = None) -> object:
    upload = tmp / name
    upload.write_bytes(data)
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    return inspect_artifact(
        upload,
        declared_format=fmt,
        filename=name,
        spec=None,
        work_dir=work,
        max_unpacked_bytes=1 << 30,
    )


def with_extra(folder: Path, name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name)
        info = tarfile.TarInfo(name)
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_a_folder_archive_is_an_hf_version(folder: Path, tmp_path: Path) -> None:
    info = inspect(tar_folder(folder), tmp_path)
    assert info.format == "hf"  # type: ignore[attr-defined]
    spec = info.spec  # type: ignore[attr-defined]
    assert spec["kind"] == "causal_lm"
    assert spec["chat_template"] is True
    assert spec["context_length"] == 64
    assert "model.safetensors" not in info.files  # type: ignore[attr-defined]


def test_a_zip_without_a_root_folder_and_a_declared_format(folder: Path, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in folder.iterdir():
            zf.write(path, path.name)
    info = inspect(buffer.getvalue(), tmp_path, name="upload.bin", fmt="hf")
    assert info.format == "hf"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("pytorch_model.bin", b"\x80\x02}q\x00."),
        ("modeling_evil.py", b"import os\n"),
    ],
)
def test_pickles_and_code_are_refused(
    folder: Path, tmp_path: Path, name: str, content: bytes
) -> None:
    with pytest.raises(UnsafeArtifact, match=name):
        inspect(with_extra(folder, name, content), tmp_path, name="m.tar")


def test_auto_map_is_refused(folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in folder.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    config = json.loads((copy / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.Evil"}
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsafeArtifact, match="auto_map"):
        inspect(tar_folder(copy), tmp_path)


def test_a_folder_without_tokenizer_is_refused(folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "notok"
    copy.mkdir()
    for path in folder.iterdir():
        if not path.name.startswith("tokenizer"):
            (copy / path.name).write_bytes(path.read_bytes())
    with pytest.raises(InvalidInput, match="tokenizer"):
        inspect(tar_folder(copy), tmp_path)
