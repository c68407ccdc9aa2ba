"""``client.models.push_hf``, ``client.llm`` and ``client.openai()`` against a real server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelyard.client import Client, NotFoundError, ValidationError
from tests.llm.tiny import build_tiny_lm

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    return build_tiny_lm(tmp_path / "tiny", positions=64)


def test_push_hf_deploy_and_openai_client(admin: Client, tiny_folder: Path) -> None:
    with pytest.raises(NotFoundError):
        admin.models.get("tiny")
    reports: list[tuple[int, int | None]] = []
    version = admin.models.push_hf(
        "tiny",
        tiny_folder,
        description="a tiny chat model",
        progress=lambda d, t: reports.append((d, t)),
    )
    assert (version.model, version.version, version.format) == ("tiny", 1, "hf")
    assert version.spec is not None
    assert version.spec["kind"] == "causal_lm"
    assert version.spec["chat_template"] is True
    assert reports and reports[-1][0] == reports[-1][1] == version.size
    # A second push adds a version to the existing model.
    assert admin.models.push_hf("tiny", tiny_folder).version == 2

    admin.deploy("tiny", "tiny@1", max_batch_size=4, max_queue=16)

    oa = admin.openai()
    assert str(oa.base_url).rstrip("/") == admin.base_url.rstrip("/") + "/v1"
    assert "tiny" in [m.id for m in oa.models.list()]
    answer = oa.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hello there"}],
        max_tokens=5,
        temperature=0,
    )
    assert answer.model == "tiny"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage is not None and 0 < answer.usage.completion_tokens <= 5
    text = answer.choices[0].message.content or ""

    # The SDK's own stream gives the same greedy answer, piece by piece.
    pieces = list(
        admin.llm.chat_stream(
            "tiny", [{"role": "user", "content": "hello there"}], max_tokens=5, temperature=0
        )
    )
    assert "".join(pieces) == text
    completion = "".join(admin.llm.complete_stream("tiny", "the quick", max_tokens=4))
    assert completion

    with pytest.raises(NotFoundError) as missing:
        list(admin.llm.chat_stream("nope", [{"role": "user", "content": "hi"}]))
    assert "nope" in missing.value.detail


def test_push_hf_refuses_other_files_before_sending(admin: Client, tiny_folder: Path) -> None:
    (tiny_folder / "pytorch_model.bin").write_bytes(b"pickle")
    (tiny_folder / "modeling_evil.py").write_text("import os\n")
    with pytest.raises(ValueError, match=r"modeling_evil\.py, pytorch_model\.bin"):
        admin.models.push_hf("evil", tiny_folder)
    with pytest.raises(NotFoundError):
        admin.models.get("evil")
    with pytest.raises(ValueError, match="not a folder"):
        admin.models.push_hf("evil", tiny_folder / "config.json")


def test_push_hf_server_checks_still_apply(admin: Client, tiny_folder: Path) -> None:
    (tiny_folder / "tokenizer.json").unlink()
    with pytest.raises(ValidationError, match="tokenizer"):
        admin.models.push_hf("no-tokenizer", tiny_folder)
