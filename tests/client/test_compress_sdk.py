"""The SDK's compression calls: ``models.compare`` and the compress, distill, finetune and
evaluate jobs, checked against httpx.MockTransport for the requests they send, and once
end to end against a real server."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelyard.client import Client, Job, ValidationError
from tests.support.server import LiveServer, live_server

BASE = "http://modelyard.test"
WHEN = "2024-05-01T12:00:00+00:00"
JOB = {
    "id": "j" * 32,
    "type": "compress",
    "status": "queued",
    "owner": {"id": "p" * 32, "name": "alice"},
    "spec": {},
    "progress": 0.0,
    "eta_s": None,
    "metrics": {},
    "result": None,
    "error": None,
    "attempt": 1,
    "created_at": WHEN,
    "started_at": None,
    "finished_at": None,
}
COMPARISON = {
    "model": "digits-mlp",
    "versions": [{"version": 1, "format": "safetensors"}, {"version": 2, "format": "safetensors"}],
    "delta": {"weight_bytes": -78000},
    "ratio": {"weight_bytes": 3.9},
    "comparable": True,
}


class Recorder:
    """Answers every request with ``status`` and ``body``, and keeps what was sent."""

    def __init__(self, body: Any, status: int = 200) -> None:
        self.body = body
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return httpx.Response(self.status, json=self.body)

    @property
    def sent(self) -> dict[str, Any]:
        (request,) = self.requests
        assert (request.method, request.url.path) == ("POST", "/api/v1/jobs")
        body: dict[str, Any] = json.loads(request.content)
        return body


def _client(recorder: Recorder) -> Client:
    return Client(BASE, "my_key", transport=httpx.MockTransport(recorder))


def test_compare_gets_the_two_versions_side_by_side() -> None:
    recorder = Recorder(COMPARISON)
    with _client(recorder) as client:
        report = client.models.compare("digits mlp", 1, "production")
    (request,) = recorder.requests
    assert request.method == "GET"
    assert request.url.raw_path == b"/api/v1/models/digits%20mlp/versions/1/compare/production"
    assert report == COMPARISON


def test_compress_posts_a_compress_job() -> None:
    recorder = Recorder({**JOB, "status": "queued"}, status=201)
    method = {"name": "quantize", "scheme": "dynamic_int8"}
    with _client(recorder) as client:
        job = client.jobs.compress(
            "digits-mlp",
            3,
            method,
            "digits-test",
            gate={"max_metric_drop": 0.01},
            output_model="digits-int8",
            label="y",
        )
    assert isinstance(job, Job) and job.id == JOB["id"]
    assert recorder.sent == {
        "type": "compress",
        "source": {"model": "digits-mlp", "version": 3},
        "method": method,
        "eval_dataset": "digits-test",
        "gate": {"max_metric_drop": 0.01},
        "output_model": "digits-int8",
        "label": "y",
    }


def test_compress_leaves_out_what_is_not_given() -> None:
    recorder = Recorder(JOB, status=201)
    with _client(recorder) as client:
        client.jobs.compress("m", "latest", {"name": "cast", "dtype": "float16"}, "d")
    assert recorder.sent == {
        "type": "compress",
        "source": {"model": "m", "version": "latest"},
        "method": {"name": "cast", "dtype": "float16"},
        "eval_dataset": "d",
    }


def test_distill_posts_the_student_spec_and_options() -> None:
    recorder = Recorder({**JOB, "type": "distill"}, status=201)
    student = {"arch": "mlp", "hidden": [16]}
    with _client(recorder) as client:
        client.jobs.distill(
            "digits-mlp",
            "production",
            student,
            "digits-train",
            eval_dataset="digits-test",
            temperature=2.0,
            alpha=0.5,
            epochs=4,
            batch_size=32,
        )
    assert recorder.sent == {
        "type": "distill",
        "teacher": {"model": "digits-mlp", "version": "production"},
        "student": {"spec": student},
        "dataset": "digits-train",
        "eval_dataset": "digits-test",
        "temperature": 2.0,
        "alpha": 0.5,
        "epochs": 4,
        "batch_size": 32,
    }


def test_distill_evaluates_on_its_training_set_unless_told_and_keeps_server_defaults() -> None:
    recorder = Recorder({**JOB, "type": "distill"}, status=201)
    with _client(recorder) as client:
        client.jobs.distill("t", 1, {"arch": "mlp"}, "digits")
    assert recorder.sent == {
        "type": "distill",
        "teacher": {"model": "t", "version": 1},
        "student": {"spec": {"arch": "mlp"}},
        "dataset": "digits",
        "eval_dataset": "digits",
    }


def test_finetune_and_evaluate_post_their_jobs() -> None:
    recorder = Recorder({**JOB, "type": "finetune"}, status=201)
    with _client(recorder) as client:
        client.jobs.finetune(
            "keras-mlp", 1, "digits-train", "digits-test", epochs=2, optimizer="sgd", seed=3
        )
    assert recorder.sent == {
        "type": "finetune",
        "source": {"model": "keras-mlp", "version": 1},
        "dataset": "digits-train",
        "eval_dataset": "digits-test",
        "epochs": 2,
        "optimizer": "sgd",
        "seed": 3,
    }
    recorder = Recorder({**JOB, "type": "evaluate"}, status=201)
    with _client(recorder) as client:
        client.jobs.evaluate("digits-mlp", 2, "digits-test", label="y")
    assert recorder.sent == {
        "type": "evaluate",
        "source": {"model": "digits-mlp", "version": 2},
        "eval_dataset": "digits-test",
        "label": "y",
    }


def test_a_refused_compress_raises_validation_error_naming_the_field() -> None:
    problem = {"title": "Invalid input", "status": 422, "detail": "method.sparsity: required"}
    recorder = Recorder(problem, status=422)
    with _client(recorder) as client, pytest.raises(ValidationError, match=r"method\.sparsity"):
        client.jobs.compress("m", 1, {"name": "prune", "kind": "unstructured"}, "d")


@pytest.fixture
def server(make_settings: Callable[..., object]) -> Iterator[LiveServer]:
    settings = make_settings(executor_slots=2, job_heartbeat_timeout_s=5)
    with live_server(settings) as srv:  # type: ignore[arg-type]
        yield srv


def push_digits(client: Client, tmp_path: Path) -> None:
    """``digits-train`` and ``digits-test``: scikit-learn's digits, split 3:1."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    for name, xs, ys in (("digits-train", x_train, y_train), ("digits-test", x_test, y_test)):
        path = tmp_path / f"{name}.npz"
        np.savez(path, x=xs, y=ys)
        client.datasets.push(name, path, label="y")


def train_and_quantize(client: Client, tmp_path: Path) -> Job:
    """A digits MLP (version 1) and its dynamic int8 child (version 2), through the SDK."""
    push_digits(client, tmp_path)
    trained = client.jobs.create(
        {
            "type": "train",
            "model": {"spec": {"arch": "mlp", "input_shape": [64], "hidden": [128, 128]}},
            "dataset": "digits-train",
            "output_model": "digits-mlp",
            "optimizer": {"name": "adam", "lr": 0.003},
            "epochs": 15,
            "seed": 0,
            "preprocessing": {"scale": 0.0625},
        }
    ).wait(timeout=600)
    assert trained.result["version"] == 1
    job = client.jobs.compress(
        "digits-mlp",
        1,
        {"name": "quantize", "scheme": "dynamic_int8", "backend": "torchao"},
        "digits-test",
        gate={"max_metric_drop": 0.02},
    )
    return job.wait(timeout=600)


def test_a_trained_mlp_quantized_to_int8_through_the_sdk_compares_smaller(
    admin: Client, tmp_path: Path
) -> None:
    job = train_and_quantize(admin, tmp_path)
    assert job.type == "compress" and job.status == "succeeded"
    assert job.result["model"] == "digits-mlp" and job.result["version"] == 2
    report = job.result["report"]
    assert report["ratio"]["weight_bytes"] >= 3.5
    assert report["metric_drop"] <= 0.02

    comparison = admin.models.compare("digits-mlp", 1, 2)
    first, second = comparison["versions"]
    assert (first["version"], second["version"]) == (1, 2)
    assert first["format"] == second["format"] == "safetensors"
    assert comparison["comparable"] is True
    assert first["params"] == second["params"] == report["parent"]["params"]
    assert second["weight_bytes"] == report["child"]["weight_bytes"]
    assert comparison["ratio"]["weight_bytes"] == pytest.approx(report["ratio"]["weight_bytes"])
    assert set(second["latency_ms"]) == {"batch_1", "batch_32"}
    assert first["metric"] == "accuracy"
    assert comparison["delta"]["accuracy"] == pytest.approx(-report["metric_drop"])
