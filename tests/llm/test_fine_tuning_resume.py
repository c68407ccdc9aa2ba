"""kill -9 of the server mid fine-tuning: on restart the job resumes from its last checkpoint
and ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.jobs.conftest import wait_event, wait_for
from tests.llm.conftest import deploy, push_hf
from tests.llm.test_fine_tuning_api import chat_lines
from tests.llm.tiny import build_tiny_lm, tar_folder
from tests.support.process import server_process
from tests.support.server import ADMIN_KEY

ENV = {"MODELYARD_EXECUTOR_SLOTS": "1", "MODELYARD_JOB_HEARTBEAT_TIMEOUT_S": "5"}
JOB_PREFIX = "ftjob-"
# Enough steps (32 an epoch, 1,280 in all: several seconds) that the job still runs well after
# its first checkpoint (the end of its first epoch) is seen.
HYPER = {"n_epochs": 40, "batch_size": 4, "learning_rate_multiplier": 10}
LINES = 128


def _start(client: openai.OpenAI, train_id: str, suffix: str) -> str:
    job = client.fine_tuning.jobs.create(
        model="tiny",
        training_file=train_id,
        suffix=suffix,
        seed=3,
        method={"type": "supervised", "supervised": {"hyperparameters": HYPER}},  # type: ignore[typeddict-item]
    )
    return job.id.removeprefix(JOB_PREFIX)


def _weights(api: httpx.Client, model: str) -> dict[str, Any]:
    from safetensors.torch import load

    archive = api.get(f"/api/v1/models/{model}/versions/1/download").content
    tensors: dict[str, Any] = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if member.name.endswith(".safetensors"):
                handle = tar.extractfile(member)
                assert handle is not None
                tensors.update(load(handle.read()))
    return tensors


@pytest.mark.slow
def test_kill_9_mid_fine_tuning_resumes_to_identical_weights(tmp_path: Path) -> None:
    import torch

    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with server_process(data_dir, log, **ENV) as srv:
        api = httpx.Client(base_url=srv.url, headers=auth, timeout=120)
        push_hf(api, "tiny", tar_folder(build_tiny_lm(tmp_path / "tiny", positions=64)))
        deploy(api, "tiny", "tiny")
        client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=ADMIN_KEY)
        train = client.files.create(file=("train.jsonl", chat_lines(LINES)), purpose="fine-tune")
        whole = _start(client, train.id, "whole")
        done = wait_for(api, whole, timeout=600)
        assert done["status"] == "succeeded", done["error"]
        broken = _start(client, train.id, "broken")
        wait_event(api, broken, "checkpoint", timeout=300)
        time.sleep(0.5)  # let it run on past the checkpoint: the resume must discard that
        srv.kill9()
    with server_process(data_dir, log, **ENV) as srv:
        api = httpx.Client(base_url=srv.url, headers=auth, timeout=120)
        done = wait_for(api, broken, timeout=600)
        assert done["status"] == "succeeded", done["error"]
        assert done["attempt"] == 2
        events = api.get(f"/api/v1/jobs/{broken}/events", params={"limit": 500}).json()["items"]
        resumed = [e for e in events if e["type"] == "resumed"]
        assert resumed and resumed[0]["data"]["step"] > 0
        whole_model = api.get(f"/api/v1/jobs/{whole}").json()["result"]["model"]
        broken_model = done["result"]["model"]
        a, b = _weights(api, whole_model), _weights(api, broken_model)
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.equal(a[name], b[name]), name
