"""The official openai client against a live server: models, chat, completions, errors."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.llm.conftest import deploy, push_hf
from tests.llm.tiny import build_tiny_lm, tar_folder
from tests.support.server import LiveServer


@pytest.fixture(scope="module")
def client(llm_server: LiveServer, tiny_deployed: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{llm_server.url}/v1", api_key=llm_server.admin_key)


def test_models_list_shows_the_deployment(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "tiny" in ids
    assert client.models.retrieve("tiny").id == "tiny"


def test_chat_completion_matches_in_process_greedy_generation(
    client: openai.OpenAI, tiny_folder: Path
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    messages = [{"role": "user", "content": "what is the capital of mars ?"}]
    reply = client.chat.completions.create(
        model="tiny",
        messages=messages,
        max_tokens=6,
        temperature=0,  # type: ignore[arg-type]
    )
    tok = AutoTokenizer.from_pretrained(str(tiny_folder))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_folder)).eval()
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]])
    out = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False
    )
    new = out[0, ids.shape[1] :]
    expected = tok.decode(new, skip_special_tokens=True)
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == expected
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == ids.shape[1]
    assert reply.usage.completion_tokens == len(new)
    assert choice.finish_reason == ("stop" if tok.eos_token_id in new.tolist() else "length")


def test_streamed_chat_gives_the_same_text_and_usage(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "tell me a story"}]
    plain = client.chat.completions.create(
        model="tiny",
        messages=messages,
        max_tokens=8,
        temperature=0,  # type: ignore[arg-type]
    )
    stream = client.chat.completions.create(
        model="tiny",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert text == plain.choices[0].message.content
    assert finishes[-1] == plain.choices[0].finish_reason
    assert all(f is None for f in finishes[:-1])
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens  # type: ignore[union-attr]


def test_seeded_sampling_repeats_and_n_gives_several_choices(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "one two three"}]

    def ask() -> list[str | None]:
        reply = client.chat.completions.create(
            model="tiny",
            messages=messages,  # type: ignore[arg-type]
            max_tokens=10,
            temperature=1.5,
            top_p=0.95,
            seed=7,
            n=3,
        )
        assert [c.index for c in reply.choices] == [0, 1, 2]
        return [c.message.content for c in reply.choices]

    first = ask()
    assert ask() == first
    assert len(set(first)) > 1


def test_completion_with_stop_string_and_stream(client: openai.OpenAI) -> None:
    full = client.completions.create(
        model="tiny", prompt="hello there", max_tokens=12, temperature=0
    )
    text = full.choices[0].text
    words = text.split()
    assert len(words) >= 3
    stop = words[2]
    cut = client.completions.create(
        model="tiny", prompt="hello there", max_tokens=12, temperature=0, stop=[stop]
    )
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == text[: text.index(stop)]
    streamed = client.completions.create(
        model="tiny", prompt="hello there", max_tokens=12, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == text


def test_bad_requests_get_openai_shaped_errors(
    client: openai.OpenAI, llm_server: LiveServer
) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found"
    assert missing.value.param == "model"

    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=10_000
        )
    assert too_long.value.code == "context_length_exceeded"
    assert too_long.value.param == "max_tokens"

    with pytest.raises(openai.BadRequestError) as malformed:
        client.chat.completions.create(
            model="tiny",
            messages=[{"role": "wizard", "content": "hi"}],  # type: ignore[list-item]
        )
    assert malformed.value.param is not None and malformed.value.param.startswith("messages")

    raw = httpx.post(
        f"{llm_server.url}/v1/chat/completions",
        json={"model": "tiny", "messages": "hi"},
        headers={"Authorization": f"Bearer {llm_server.admin_key}"},
    )
    assert raw.status_code == 400
    assert set(raw.json()["error"]) == {"message", "type", "param", "code"}
    assert raw.json()["error"]["type"] == "invalid_request_error"

    anonymous = openai.OpenAI(base_url=f"{llm_server.url}/v1", api_key="my_wrong")
    with pytest.raises(openai.AuthenticationError):
        anonymous.models.list()


def test_a_model_without_chat_template_is_refused_on_chat(
    client: openai.OpenAI, admin: httpx.Client, tmp_path: Path
) -> None:
    folder = build_tiny_lm(tmp_path / "plain", chat=False)
    push_hf(admin, "plain", tar_folder(folder))
    deploy(admin, "plain", "plain")
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="plain", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.code == "model_not_supported"
    reply = client.completions.create(model="plain", prompt="hello", max_tokens=3)
    assert reply.usage is not None and reply.usage.completion_tokens >= 1


def _samples(server: LiveServer, name: str, **labels: str) -> float:
    """The sum of the Prometheus samples called ``name`` whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    admin = {"Authorization": f"Bearer {server.admin_key}"}  # private deployments' series
    text = httpx.get(f"{server.url}/metrics", headers=admin).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def test_generation_is_metered_per_deployment(
    client: openai.OpenAI, llm_server: LiveServer
) -> None:
    where = {"deployment": "tiny", "version": "1"}
    before = {
        "length": _samples(
            llm_server, "modelyard_llm_requests_total", finish_reason="length", **where
        ),
        "tokens": _samples(llm_server, "modelyard_llm_generation_tokens_total", **where),
        "prompt": _samples(llm_server, "modelyard_llm_prompt_tokens_total", **where),
        "ttft": _samples(llm_server, "modelyard_llm_time_to_first_token_seconds_count", **where),
    }
    reply = client.completions.create(
        model="tiny",
        prompt="the capital of mars is",
        max_tokens=5,
        temperature=0,
        n=2,
        stop=None,
    )
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 10
    after_length = _samples(
        llm_server, "modelyard_llm_requests_total", finish_reason="length", **where
    )
    # Each choice is a sequence of its own; both ran to max_tokens.
    assert after_length - before["length"] == 2
    tokens = _samples(llm_server, "modelyard_llm_generation_tokens_total", **where)
    assert tokens - before["tokens"] == 10
    prompt = _samples(llm_server, "modelyard_llm_prompt_tokens_total", **where)
    assert prompt - before["prompt"] == 2 * reply.usage.prompt_tokens
    ttft = _samples(llm_server, "modelyard_llm_time_to_first_token_seconds_count", **where)
    assert ttft - before["ttft"] == 2
    # Nothing is left in the engine once the answer is in.
    assert _samples(llm_server, "modelyard_llm_requests_running", **where) == 0
    assert _samples(llm_server, "modelyard_llm_requests_waiting", **where) == 0
