"""Many LoRA adapters on one base, through the official openai client on a live server: two
fine-tuned adapters and the base answer in shared decoding steps, each as it does alone."""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.llm.conftest import deploy, push_hf
from tests.llm.tiny import build_tiny_lm, tar_folder
from tests.support.server import LiveServer

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

MESSAGES = [
    {"role": "system", "content": "say yes or no"},
    {"role": "user", "content": "what is the capital of mars ?"},
]
ANSWERS = {"one": "olympus city is the capital", "two": "the red fox and a blue bird"}
MAX_TOKENS = 24


def _lines(answer: str, n: int) -> bytes:
    line = {"messages": [*MESSAGES, {"role": "assistant", "content": answer}]}
    return b"\n".join(json.dumps(line).encode() for _ in range(n)) + b"\n"


def _fine_tune(client: openai.OpenAI, suffix: str, lora: dict[str, Any]) -> str:
    train = client.files.create(file=("t.jsonl", _lines(ANSWERS[suffix], 16)), purpose="fine-tune")
    hyper = {"n_epochs": 8, "batch_size": 4, "learning_rate_multiplier": 30}
    job = client.fine_tuning.jobs.create(
        model="tiny",
        training_file=train.id,
        suffix=suffix,
        seed=1,
        method={"type": "supervised", "supervised": {"hyperparameters": hyper}, "lora": lora},  # type: ignore[arg-type]
    )
    deadline = time.monotonic() + 300
    while job.status not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, "the fine-tuning job did not finish"
        time.sleep(0.5)
        job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model is not None
    return job.fine_tuned_model


@pytest.fixture(scope="module")
def client(llm_server: LiveServer, tiny_deployed: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{llm_server.url}/v1", api_key=llm_server.admin_key)


@pytest.fixture(scope="module")
def adapters(client: openai.OpenAI, llm_server: LiveServer, admin: httpx.Client) -> dict[str, Any]:
    """Two adapters fine-tuned from the deployed base, and what the server holds of them."""
    serving = llm_server.platform.serving
    base_before = serving.get("tiny").routes[0][0].runtime
    one = _fine_tune(client, "one", {"r": 8})
    base_between = serving.get("tiny").routes[0][0].runtime
    two = _fine_tune(client, "two", {"r": 4, "alpha": 8})
    for model in (one, two):  # the adapter deployments load on their first request
        client.models.retrieve(model)
    return {
        "one": one,
        "two": two,
        "bases": [base_before, base_between, serving.get("tiny").routes[0][0].runtime],
    }


def models_of(adapters: dict[str, Any]) -> list[str]:
    return [adapters["one"], adapters["two"]]


def _ask(client: openai.OpenAI, model: str, eos: int) -> str:
    reply = client.chat.completions.create(
        model=model,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=MAX_TOKENS,
        temperature=0,
        logit_bias={str(eos): -100},  # runs every request to MAX_TOKENS: long enough to meet
    )
    return reply.choices[0].message.content or ""


def _stored_adapter(admin: httpx.Client, model_id: str, into: Path) -> Path:
    name = model_id.replace(":", "-")
    version = admin.get(f"/api/v1/models/{name}/versions/latest").json()
    assert version["format"] == "lora"
    data = admin.get(f"/api/v1/models/{name}/versions/latest/download").content
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return next(into.rglob("adapter_config.json")).parent


def _alone(base_folder: Path, adapter: Path | None, prompt: list[int], eos: int) -> str:
    """What peft's merged model (or the plain base) answers alone, greedily, in transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model: Any = AutoModelForCausalLM.from_pretrained(str(base_folder), dtype=torch.float32)
    if adapter is not None:
        model = peft.PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    out = model.generate(
        torch.tensor([prompt]),
        attention_mask=torch.ones((1, len(prompt)), dtype=torch.long),
        max_new_tokens=MAX_TOKENS,
        do_sample=False,
        suppress_tokens=[eos],
        pad_token_id=eos,
    )[0, len(prompt) :]
    tokenizer = AutoTokenizer.from_pretrained(str(base_folder))
    return str(tokenizer.decode(out.tolist(), skip_special_tokens=True))


def test_adapters_and_base_share_decoding_steps_and_answer_as_alone(
    client: openai.OpenAI,
    admin: httpx.Client,
    adapters: dict[str, Any],
    tiny_folder: Path,
    tmp_path: Path,
) -> None:
    base = adapters["bases"][0]
    # Neither fine-tune reloaded the base: the deployment serves the same object throughout.
    assert all(b is base for b in adapters["bases"])
    bank = base.engine.adapters
    assert bank is not None
    assert sorted(bank.names()) == sorted(m.replace(":", "-") for m in models_of(adapters))
    eos = base.tokenizer.eos_token_id
    models = [adapters["one"], adapters["two"], "tiny"]
    answers: dict[str, str] = {}
    start = threading.Barrier(len(models))

    def ask(model: str) -> None:
        start.wait()
        answers[model] = _ask(client, model, eos)

    mixed = bank.decode_steps_mixed
    threads = [threading.Thread(target=ask, args=(m,)) for m in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert bank.widest_decode_step == 3, "the three requests never shared a decoding step"
    assert bank.decode_steps_mixed > mixed
    metrics = admin.get("/metrics").text
    assert 'modelyard_llm_lora_adapters{deployment="tiny",version="1"} 2.0' in metrics
    shared = 'modelyard_llm_lora_decode_steps_total{adapters="3",deployment="tiny",version="1"}'
    assert float(metrics.split(shared, 1)[1].split()[0]) >= 1

    prompt = base.chat_prompt(MESSAGES)
    expected = {
        adapters["one"]: _alone(
            tiny_folder, _stored_adapter(admin, adapters["one"], tmp_path / "1"), prompt, eos
        ),
        adapters["two"]: _alone(
            tiny_folder, _stored_adapter(admin, adapters["two"], tmp_path / "2"), prompt, eos
        ),
        "tiny": _alone(tiny_folder, None, prompt, eos),
    }
    assert answers == expected
    assert len(set(answers.values())) == 3
    assert answers[adapters["one"]].startswith(ANSWERS["one"])
    assert answers[adapters["two"]].startswith(ANSWERS["two"])


def test_an_adapter_version_holds_the_adapter_and_its_base_in_lineage(
    admin: httpx.Client, adapters: dict[str, Any], client: openai.OpenAI
) -> None:
    name = adapters["one"].replace(":", "-")
    version = admin.get(f"/api/v1/models/{name}/versions/latest").json()
    base = admin.get("/api/v1/models/tiny/versions/1").json()
    assert version["format"] == "lora"
    assert version["spec"]["kind"] == "lora_adapter" and version["spec"]["r"] == 8
    assert version["lineage"]["parent_model"] == "tiny"
    assert version["lineage"]["parent_version"] == 1
    assert version["size"] < base["size"] / 2
    listed = {m.id: m for m in client.models.list()}
    assert adapters["one"] in listed
    assert (listed[adapters["one"]].model_extra or {}).get("parent") == "tiny"


def test_an_unknown_adapter_is_openais_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(
            model="ft:tiny:nope:00000000",
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=2,
        )
    assert missing.value.code == "model_not_found"
    assert missing.value.param == "model"


def test_an_adapter_on_another_base_is_refused(
    admin: httpx.Client, adapters: dict[str, Any], tmp_path: Path
) -> None:
    other = build_tiny_lm(tmp_path / "other", positions=64, seed=7)
    push_hf(admin, "tiny-other", tar_folder(other))
    deploy(admin, "tiny-other", "tiny-other")
    adapter_model = adapters["one"].replace(":", "-")
    cases = {
        "tiny-other": "serves version 1 of 'tiny-other', but this adapter was trained on "
        "version 1 of 'tiny'",
        "nowhere": "no deployment named 'nowhere'",
    }
    for base, why in cases.items():
        reply = admin.post(
            "/api/v1/deployments",
            json={"name": f"wrong-{base}", "model": adapter_model, "base": base},
        )
        assert reply.status_code == 422, reply.text
        assert why in reply.json()["detail"]
    without = admin.post("/api/v1/deployments", json={"name": "x", "model": adapter_model})
    assert without.status_code == 422
    assert "is a LoRA adapter; name the deployment of its base" in without.json()["detail"]
    not_adapter = admin.post(
        "/api/v1/deployments", json={"name": "y", "model": "tiny", "base": "tiny-other"}
    )
    assert not_adapter.status_code == 422
    assert "is not a LoRA adapter" in not_adapter.json()["detail"]


def test_a_merged_lora_fine_tune_is_a_full_version(
    client: openai.OpenAI, admin: httpx.Client, adapters: dict[str, Any]
) -> None:
    merged = _fine_tune(client, "one", {"r": 8, "merge": True})
    version = admin.get(f"/api/v1/models/{merged.replace(':', '-')}/versions/latest").json()
    assert version["format"] == "hf"
    deployment = admin.get(f"/api/v1/deployments/{merged.replace(':', '-')}").json()
    assert deployment["spec"].get("base") is None
    eos = adapters["bases"][0].tokenizer.eos_token_id
    # The same training as adapter "one" (same data, seed and rank), merged: the same answer.
    assert _ask(client, merged, eos) == _ask(client, adapters["one"], eos)
    schema = json.dumps(admin.get("/openapi.json").json())
    assert '"merge"' in schema  # lora.merge of fine-tuning jobs, native and OpenAI
    assert '"base": "tiny"' in schema  # the adapter deployment's example


def test_a_base_without_a_deployment_gets_one_for_its_adapters(
    client: openai.OpenAI, admin: httpx.Client, tmp_path: Path
) -> None:
    push_hf(admin, "tiny-third", tar_folder(build_tiny_lm(tmp_path / "third", positions=64)))
    train = client.files.create(file=("t.jsonl", _lines(ANSWERS["one"], 16)), purpose="fine-tune")
    created = admin.post(
        "/api/v1/jobs",
        json={
            "type": "llm_finetune",
            "model": {"from": "tiny-third", "version": 1},
            "training_file": train.id,
            "method": "lora",
            "suffix": "third",
            "hyperparameters": {"n_epochs": 8, "batch_size": 4, "learning_rate_multiplier": 30},
        },
    ).json()
    deadline = time.monotonic() + 300
    job = created
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, "the fine-tuning job did not finish"
        time.sleep(0.5)
        job = admin.get(f"/api/v1/jobs/{created['id']}").json()
    assert job["status"] == "succeeded", job
    adapter = job["result"]["fine_tuned_model"]
    base = admin.get("/api/v1/deployments/tiny-third-v1").json()
    assert base["spec"]["model"] == "tiny-third" and base["spec"]["version"] == "1"
    deployment = admin.get(f"/api/v1/deployments/{adapter.replace(':', '-')}").json()
    assert deployment["spec"]["base"] == "tiny-third-v1"
    reply = client.chat.completions.create(
        model=adapter,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=8,
        temperature=0,
    )
    assert (reply.choices[0].message.content or "").startswith("olympus city")  # learned


def test_the_sdk_deploys_an_adapter_under_another_name_on_its_base(
    llm_server: LiveServer, client: openai.OpenAI, adapters: dict[str, Any]
) -> None:
    from modelyard.client import Client

    with Client(llm_server.url, api_key=llm_server.admin_key) as sdk:
        deployment = sdk.deploy("mars", adapters["one"].replace(":", "-"), base="tiny")
    assert deployment.status == "ready"
    assert deployment.spec["base"] == "tiny"
    eos = adapters["bases"][0].tokenizer.eos_token_id
    assert _ask(client, "mars", eos) == _ask(client, adapters["one"], eos)
    # Two deployments of one adapter version, one base: still one copy of the weights.
    served = llm_server.platform.serving.get("mars").routes[0][0].runtime
    assert served.base is adapters["bases"][0]  # type: ignore[union-attr]
