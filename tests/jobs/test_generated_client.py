"""A client generated from ``/openapi.json`` by openapi-python-client submits jobs of two kinds.

The document must describe every field of each kind's request well enough for a generator
that knows nothing of Modelyard: the generated models serialise a train job and a compress
job, and the live server runs both.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.jobs.conftest import MLP, wait_for
from tests.support.server import LiveServer

pytestmark = pytest.mark.slow

GENERATOR = Path(sys.executable).with_name("openapi-python-client")


def _generate(document: dict[str, Any], where: Path) -> Any:
    """Generate the client package into ``where`` and import it."""
    where.mkdir()
    spec = where / "openapi.json"
    spec.write_text(json.dumps(document))
    config = where / "config.json"
    config.write_text(json.dumps({"project_name_override": "myclient", "post_hooks": []}))
    done = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(spec),
            "--config",
            str(config),
            "--meta",
            "none",
        ],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    package = next(p for p in where.iterdir() if (p / "client.py").is_file())
    sys.path.insert(0, str(where))
    try:
        return importlib.import_module(package.name)
    finally:
        sys.path.remove(str(where))


def test_a_generated_client_submits_a_train_and_a_compress_job(
    server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    document = api.get("/openapi.json").json()
    request = document["components"]["schemas"]["JobRequest"]
    kinds = {ref["$ref"].rsplit("/", 1)[1] for ref in request["oneOf"]}
    assert {"TrainRequest", "CompressRequest", "DistillRequest", "LlmFineTuneRequest"} <= kinds
    optimizer = document["components"]["schemas"]["OptimizerConfig"]
    assert optimizer["properties"]["name"]["enum"] == ["gd", "sgd", "adam", "adamw", "rmsprop"]
    strategy = document["components"]["schemas"]["DistributedConfig"]["properties"]["strategy"]
    assert strategy["enum"] == ["ddp", "parameter_server"]

    generated = _generate(document, tmp_path / "generated")
    models = importlib.import_module(f"{generated.__name__}.models")
    create_job = importlib.import_module(
        f"{generated.__name__}.api.jobs.create_job_api_v1_jobs_post"
    )
    client = generated.AuthenticatedClient(base_url=server.url, token=server.admin_key, timeout=60)

    train = models.TrainRequest.from_dict(
        {
            "type": "train",
            "model": {"spec": MLP},
            "dataset": "digits",
            "optimizer": {"name": "adam", "lr": 0.01},
            "epochs": 2,
            "preprocessing": {"scale": 0.0625},
            "output_model": "generated-mlp",
        }
    )
    reply = create_job.sync_detailed(client=client, body=train)
    assert reply.status_code == 201, reply.content
    trained = wait_for(api, json.loads(reply.content)["id"], timeout=300)
    assert trained["status"] == "succeeded", trained["error"]

    compress = models.CompressRequest.from_dict(
        {
            "type": "compress",
            "source": {"model": "generated-mlp", "version": "1"},
            "method": {"name": "prune", "kind": "unstructured", "sparsity": 0.3},
            "eval_dataset": "digits",
        }
    )
    reply = create_job.sync_detailed(client=client, body=compress)
    assert reply.status_code == 201, reply.content
    compressed = wait_for(api, json.loads(reply.content)["id"], timeout=300)
    assert compressed["status"] == "succeeded", compressed["error"]

    # An unknown field is refused with a 422 naming it, as the document's schemas say.
    refused = api.post("/api/v1/jobs", json={**train.to_dict(), "epochz": 3})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "epochz"
