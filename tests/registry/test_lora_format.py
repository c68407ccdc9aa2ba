"""LoRA adapter archives (format ``lora``): peft's two files are taken and described; code,
pickles and matrices that are not LoRA's are refused."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from modelyard.errors import InvalidInput, UnsafeArtifact
from modelyard.registry.artifacts import inspect_artifact

torch = pytest.importorskip("torch")

CONFIG = {
    "peft_type": "LORA",
    "r": 4,
    "lora_alpha": 8,
    "target_modules": ["c_attn"],
    "task_type": "CAUSAL_LM",
}


def _archive(tmp_path: Path, files: dict[str, bytes]) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"adapter/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path = tmp_path / "adapter.tar.gz"
    path.write_bytes(buffer.getvalue())
    return path


def _weights(names: list[str]) -> bytes:
    from safetensors.torch import save

    return save({name: torch.zeros(4, 8) for name in names})


def _inspect(path: Path, tmp_path: Path) -> object:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return inspect_artifact(
        path,
        declared_format=None,
        filename=path.name,
        spec=None,
        work_dir=work,
        max_unpacked_bytes=1 << 24,
    )


LAYER = "base_model.model.transformer.h.0.attn.c_attn"


def test_a_peft_adapter_archive_is_a_lora_version(tmp_path: Path) -> None:
    files = {
        "adapter_config.json": json.dumps(CONFIG).encode(),
        "adapter_model.safetensors": _weights([f"{LAYER}.lora_A.weight", f"{LAYER}.lora_B.weight"]),
        "README.md": b"# adapter\n",
    }
    info = _inspect(_archive(tmp_path, files), tmp_path)
    assert info.format == "lora"  # type: ignore[attr-defined]
    assert info.spec == {  # type: ignore[attr-defined]
        "kind": "lora_adapter",
        "r": 4,
        "alpha": 8.0,
        "use_rslora": False,
        "target_modules": ["c_attn"],
        "layers": 1,
    }


@pytest.mark.parametrize(
    ("extra", "error", "why"),
    [
        ({"adapter_model.bin": b"\x80\x04."}, UnsafeArtifact, "pickled weights are refused"),
        ({"hook.py": b"import os"}, UnsafeArtifact, "'hook.py'"),
    ],
)
def test_anything_but_the_adapter_is_refused(
    tmp_path: Path, extra: dict[str, bytes], error: type[Exception], why: str
) -> None:
    files = {
        "adapter_config.json": json.dumps(CONFIG).encode(),
        "adapter_model.safetensors": _weights([f"{LAYER}.lora_A.weight", f"{LAYER}.lora_B.weight"]),
        **extra,
    }
    with pytest.raises(error, match=why):
        _inspect(_archive(tmp_path, files), tmp_path)


@pytest.mark.parametrize(
    ("config", "names", "why"),
    [
        ({**CONFIG, "use_dora": True}, ["A", "B"], "DoRA"),
        ({**CONFIG, "peft_type": "IA3"}, ["A", "B"], "peft_type must be 'LORA'"),
        (CONFIG, ["A"], "only one of lora_A and lora_B"),
        (CONFIG, ["A", "B", "x.lora_embedding_A"], "is not a LoRA matrix"),
    ],
)
def test_adapters_that_cannot_be_served_are_refused(
    tmp_path: Path, config: dict[str, object], names: list[str], why: str
) -> None:
    full = {"A": f"{LAYER}.lora_A.weight", "B": f"{LAYER}.lora_B.weight"}
    files = {
        "adapter_config.json": json.dumps(config).encode(),
        "adapter_model.safetensors": _weights([full.get(n, n) for n in names]),
    }
    with pytest.raises(InvalidInput, match=why):
        _inspect(_archive(tmp_path, files), tmp_path)
