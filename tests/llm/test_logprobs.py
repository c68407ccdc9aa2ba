"""Log-probabilities on /v1/chat/completions and /v1/completions, through the openai client.

The values must be the model's own: ``log_softmax`` of its logits at each generated position,
computed here in-process with transformers on the same prompt and the same greedy tokens.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.server import LiveServer

TOP = 3


@pytest.fixture(scope="module")
def client(llm_server: LiveServer, tiny_deployed: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{llm_server.url}/v1", api_key=llm_server.admin_key)


def _reference(folder: Path, prompt_ids: list[int], new_ids: list[int]) -> list[Any]:
    """The model's log-softmax at each generated position (one forward over the whole text)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    ids = torch.tensor([prompt_ids + new_ids])
    with torch.inference_mode():
        logits = model(ids).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    start = len(prompt_ids) - 1
    return [logprobs[start + i] for i in range(len(new_ids))]


def _chat_prompt(folder: Path, messages: list[dict[str, str]]) -> list[int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids: list[int] = tok(prompt, add_special_tokens=False)["input_ids"]
    return ids


def _greedy(folder: Path, prompt_ids: list[int], count: int) -> list[int]:
    """The tokens greedy decoding generates in-process (the end token left out)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    ids = torch.tensor([prompt_ids])
    out = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=count, do_sample=False
    )
    new: list[int] = out[0, len(prompt_ids) :].tolist()
    return [t for t in new if t != tok.eos_token_id]


def _texts(folder: Path, ids: list[int]) -> list[str]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    return [tok.decode([i]) for i in ids]


def test_chat_logprobs_are_the_models_own(client: openai.OpenAI, tiny_folder: Path) -> None:
    messages = [{"role": "user", "content": "what is the capital of mars ?"}]
    reply = client.chat.completions.create(
        model="tiny",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=6,
        temperature=0,
        logprobs=True,
        top_logprobs=TOP,
    )
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    content = logprobs.content
    assert reply.usage is not None
    assert len(content) <= reply.usage.completion_tokens
    prompt_ids = _chat_prompt(tiny_folder, messages)
    new_ids = _greedy(tiny_folder, prompt_ids, 6)
    assert [entry.token for entry in content] == _texts(tiny_folder, new_ids)
    reference = _reference(tiny_folder, prompt_ids, new_ids)
    for entry, token_id, expected in zip(content, new_ids, reference, strict=True):
        assert math.isclose(entry.logprob, float(expected[token_id]), abs_tol=1e-4)
        assert entry.bytes == list(entry.token.encode())
        assert len(entry.top_logprobs) == TOP
        best = expected.topk(TOP)
        assert [t.logprob for t in entry.top_logprobs] == pytest.approx(
            best.values.tolist(), abs=1e-4
        )
        # Greedy decoding chose the most likely token.
        assert entry.token == entry.top_logprobs[0].token


def test_streamed_chat_logprobs_match_the_plain_answer(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "tell me a story"}],
        "max_tokens": 8,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 2,
    }
    plain = client.chat.completions.create(**kwargs)
    streamed = []
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        for choice in chunk.choices:
            if choice.logprobs is not None and choice.logprobs.content:
                streamed.extend(choice.logprobs.content)
    assert plain.choices[0].logprobs is not None
    expected = plain.choices[0].logprobs.content or []
    assert [(e.token, round(e.logprob, 4)) for e in streamed] == [
        (e.token, round(e.logprob, 4)) for e in expected
    ]


def test_completion_logprobs_in_the_legacy_shape(client: openai.OpenAI, tiny_folder: Path) -> None:
    from transformers import AutoTokenizer

    prompt = "the capital of mars is"
    reply = client.completions.create(
        model="tiny", prompt=prompt, max_tokens=5, temperature=0, logprobs=2
    )
    choice = reply.choices[0]
    assert choice.logprobs is not None
    tokens = choice.logprobs.tokens or []
    values = choice.logprobs.token_logprobs or []
    tops = choice.logprobs.top_logprobs or []
    offsets = choice.logprobs.text_offset or []
    assert len(tokens) == len(values) == len(tops) == len(offsets) > 0
    assert all(len(top) <= 2 for top in tops)
    assert offsets == [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    tok = AutoTokenizer.from_pretrained(str(tiny_folder))
    prompt_ids: list[int] = tok(prompt, add_special_tokens=False)["input_ids"]
    new_ids = _greedy(tiny_folder, prompt_ids, 5)
    assert tokens == _texts(tiny_folder, new_ids)
    reference = _reference(tiny_folder, prompt_ids, new_ids)
    for value, token_id, expected in zip(values, new_ids, reference, strict=True):
        assert math.isclose(value, float(expected[token_id]), abs_tol=1e-4)


def test_logprob_fields_out_of_range_or_inconsistent_are_refused(
    client: openai.OpenAI, llm_server: LiveServer
) -> None:
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.BadRequestError) as too_many:
        client.chat.completions.create(
            model="tiny",
            messages=messages,
            logprobs=True,
            top_logprobs=21,  # type: ignore[arg-type]
        )
    assert too_many.value.param == "top_logprobs"
    with pytest.raises(openai.BadRequestError) as without:
        client.chat.completions.create(model="tiny", messages=messages, top_logprobs=2)  # type: ignore[arg-type]
    assert without.value.param == "top_logprobs"
    refused = httpx.post(
        f"{llm_server.url}/v1/completions",
        json={"model": "tiny", "prompt": "hi", "echo": True, "logprobs": 1},
        headers={"Authorization": f"Bearer {llm_server.admin_key}"},
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "echo"
    # Asked for none, a choice says so.
    plain = client.chat.completions.create(model="tiny", messages=messages, max_tokens=2)  # type: ignore[arg-type]
    assert plain.choices[0].logprobs is None


def _penalised_greedy(
    folder: Path, prompt_ids: list[int], count: int, frequency: float, presence: float
) -> list[int]:
    """Greedy decoding with OpenAI's penalties, written out step by step."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    ids = list(prompt_ids)
    new: list[int] = []
    with torch.inference_mode():
        for _ in range(count):
            logits = model(torch.tensor([ids])).logits[0, -1].float()
            for token in set(new):
                logits[token] -= new.count(token) * frequency + presence
            chosen = int(torch.argmax(logits))
            if chosen == tok.eos_token_id:
                break
            new.append(chosen)
            ids.append(chosen)
    return new


def test_penalties_and_logit_bias_change_the_choice_as_openai_defines_them(
    client: openai.OpenAI, tiny_folder: Path
) -> None:
    messages = [{"role": "user", "content": "what is the capital of mars ?"}]
    prompt_ids = _chat_prompt(tiny_folder, messages)
    plain = _greedy(tiny_folder, prompt_ids, 6)
    penalised = _penalised_greedy(tiny_folder, prompt_ids, 6, frequency=1.5, presence=0.5)
    assert penalised != plain  # the tiny model repeats itself; the penalties must show
    reply = client.chat.completions.create(
        model="tiny",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=6,
        temperature=0,
        frequency_penalty=1.5,
        presence_penalty=0.5,
        logprobs=True,
    )
    assert reply.choices[0].logprobs is not None
    tokens = [entry.token for entry in reply.choices[0].logprobs.content or []]
    assert tokens == _texts(tiny_folder, penalised)

    # A large bias makes greedy decoding pick that token every time.
    favourite = plain[0] + 1
    biased = client.chat.completions.create(
        model="tiny",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=3,
        temperature=0,
        logit_bias={str(favourite): 100},
        logprobs=True,
    )
    assert biased.choices[0].logprobs is not None
    chosen = [entry.token for entry in biased.choices[0].logprobs.content or []]
    assert chosen == _texts(tiny_folder, [favourite]) * 3
    with pytest.raises(openai.BadRequestError) as unknown:
        client.chat.completions.create(
            model="tiny",
            messages=messages,  # type: ignore[arg-type]
            logit_bias={"99999999": 5},
        )
    assert unknown.value.param == "logit_bias"
