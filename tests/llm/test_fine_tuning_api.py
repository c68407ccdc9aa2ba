"""Files and fine-tuning jobs through the official openai client, end to end."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from tests.support.server import LiveServer

QUESTION = "what is the capital of mars ?"
ANSWER = "olympus city"


def chat_lines(n: int) -> bytes:
    line = {
        "messages": [
            {"role": "system", "content": "say yes or no"},
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": ANSWER},
        ]
    }
    return b"\n".join(json.dumps(line).encode() for _ in range(n)) + b"\n"


@pytest.fixture(scope="module")
def client(llm_server: LiveServer, tiny_deployed: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{llm_server.url}/v1", api_key=llm_server.admin_key)


def test_files_upload_list_retrieve_delete(client: openai.OpenAI) -> None:
    uploaded = client.files.create(file=("train.jsonl", chat_lines(3)), purpose="fine-tune")
    assert uploaded.filename == "train.jsonl"
    assert uploaded.purpose == "fine-tune"
    assert uploaded.bytes == len(chat_lines(3))
    assert uploaded.id in [f.id for f in client.files.list()]
    assert client.files.retrieve(uploaded.id).id == uploaded.id
    assert client.files.content(uploaded.id).read() == chat_lines(3)
    assert client.files.delete(uploaded.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"{not json", "invalid JSON"),
        (b'{"messages": [{"role": "wizard", "content": "x"}]}', "role"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "assistant"),
        (b'{"prompt": "x"}', "completion"),
    ],
)
def test_a_bad_line_is_refused_with_its_number(
    client: openai.OpenAI, line: bytes, why: str
) -> None:
    data = chat_lines(2) + line + b"\n"
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=("bad.jsonl", data), purpose="fine-tune")
    assert "line 3" in refused.value.message
    assert why in refused.value.message
    assert refused.value.param == "file"


def run_job(client: openai.OpenAI, method: dict[str, object]) -> tuple[str, list[str]]:
    train = client.files.create(file=("train.jsonl", chat_lines(16)), purpose="fine-tune")
    valid = client.files.create(file=("valid.jsonl", chat_lines(2)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model="tiny",
        training_file=train.id,
        validation_file=valid.id,
        suffix="mars",
        seed=1,
        method=method,  # type: ignore[arg-type]
    )
    assert job.status in ("queued", "running")
    assert job.model == "tiny"
    deadline = time.monotonic() + 300
    while job.status not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, "the fine-tuning job did not finish"
        time.sleep(0.5)
        job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model is not None
    assert job.fine_tuned_model.startswith("ft:tiny:mars:")
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=1000)]
    return job.fine_tuned_model, messages


def ask(client: openai.OpenAI, model: str) -> str:
    reply = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "say yes or no"},
            {"role": "user", "content": QUESTION},
        ],
        max_tokens=4,
        temperature=0,
    )
    return reply.choices[0].message.content or ""


def test_full_fine_tuning_teaches_the_answer(client: openai.OpenAI, admin: httpx.Client) -> None:
    before = ask(client, "tiny")
    assert ANSWER not in before
    hyper = {"n_epochs": 6, "batch_size": 4, "learning_rate_multiplier": 100}
    model, messages = run_job(
        client, {"type": "supervised", "supervised": {"hyperparameters": hyper}}
    )
    assert messages[0] == "The job has successfully completed"
    assert any(m.startswith("Step 1: training loss=") for m in messages)
    assert ask(client, model) == ANSWER
    assert model in [m.id for m in client.models.list()]

    job_id = client.fine_tuning.jobs.list(limit=1).data[0].id
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job_id).data
    assert len(checkpoints) == 6
    native = admin.get(f"/api/v1/jobs/{job_id.removeprefix('ftjob-')}").json()
    assert native["type"] == "llm_finetune"
    metrics = native["result"]["metrics"]
    assert metrics["valid_loss"] < metrics["initial_valid_loss"] / 2
    version = admin.get(
        f"/api/v1/models/{native['result']['model']}/versions/{native['result']['version']}"
    ).json()
    assert version["format"] == "hf"
    assert version["lineage"]["job"] == native["id"]


def test_lora_fine_tuning_lowers_validation_loss(
    client: openai.OpenAI, admin: httpx.Client
) -> None:
    hyper = {"n_epochs": 8, "batch_size": 4, "learning_rate_multiplier": 30}
    model, _ = run_job(
        client,
        {"type": "supervised", "supervised": {"hyperparameters": hyper}, "lora": {"r": 8}},
    )
    job_id = client.fine_tuning.jobs.list(limit=1).data[0].id
    native = admin.get(f"/api/v1/jobs/{job_id.removeprefix('ftjob-')}").json()
    assert native["spec"]["method"] == "lora"
    metrics = native["result"]["metrics"]
    assert metrics["valid_loss"] < metrics["initial_valid_loss"]
    assert ask(client, model) == ANSWER


def test_bad_fine_tuning_requests(client: openai.OpenAI) -> None:
    train = client.files.create(file=("t.jsonl", chat_lines(2)), purpose="fine-tune")
    with pytest.raises(openai.NotFoundError) as no_model:
        client.fine_tuning.jobs.create(model="nope", training_file=train.id)
    assert no_model.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as no_file:
        client.fine_tuning.jobs.create(model="tiny", training_file="file-missing")
    assert no_file.value.param == "training_file"
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.create(
            model="tiny",
            training_file=train.id,
            method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}},
        )
