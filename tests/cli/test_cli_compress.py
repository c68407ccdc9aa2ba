"""``modelyard models compare``, ``modelyard compress`` and ``modelyard distill``: the
requests they send and what they print, against a fake API and once against a real server."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.client import Client
from tests.cli.fake_api import FakeAPI, answer, run
from tests.client.test_compress_sdk import train_and_quantize
from tests.support.server import LiveServer, live_server

WHEN = "2024-05-01T12:00:00+00:00"
JOB_ID = "c" * 32
JOB_PATH = f"/api/v1/jobs/{JOB_ID}"
COMPARE_PATH = "/api/v1/models/digits-mlp/versions/1/compare/2"
PARENT = {
    "size_bytes": 420000,
    "weight_bytes": 418000,
    "params": 26122,
    "nonzero_params": 26122,
    "latency_ms": {"batch_1": 0.09, "batch_32": 0.21},
    "metric": "accuracy",
    "metrics": {"loss": 0.1, "accuracy": 0.9667},
}
CHILD = {
    **PARENT,
    "size_bytes": 110000,
    "weight_bytes": 107000,
    "latency_ms": {"batch_1": 0.07, "batch_32": 0.15},
    "metrics": {"loss": 0.11, "accuracy": 0.9644},
}
COMPARISON = {
    "model": "digits-mlp",
    "versions": [
        {"version": 1, "format": "safetensors", "dataset": "digits-test", **PARENT},
        {"version": 2, "format": "safetensors", "dataset": "digits-test", **CHILD},
    ],
    "delta": {"weight_bytes": -311000, "accuracy": -0.0023, "latency_ms_batch_1": -0.02},
    "ratio": {"weight_bytes": 3.906, "latency_batch_1": 1.2857},
    "comparable": True,
}


def job(status: str = "queued", **extra: Any) -> dict[str, Any]:
    return {
        "id": JOB_ID,
        "type": "compress",
        "status": status,
        "owner": {"id": "p" * 32, "name": "alice"},
        "spec": {"source": {"model": "digits-mlp", "version": 1}, "output_model": "digits-mlp"},
        "progress": 1.0 if status == "succeeded" else 0.0,
        "eta_s": None,
        "metrics": {},
        "result": None,
        "error": None,
        "attempt": 1,
        "created_at": WHEN,
        "started_at": WHEN,
        "finished_at": WHEN if status == "succeeded" else None,
        **extra,
    }


def sent(api: FakeAPI) -> dict[str, Any]:
    (request,) = [r for r in api.requests if (r.method, r.url.path) == ("POST", "/api/v1/jobs")]
    body: dict[str, Any] = json.loads(request.content)
    return body


def test_compare_prints_a_row_per_version_then_the_differences(api: FakeAPI) -> None:
    api.routes["GET", COMPARE_PATH] = answer(200, COMPARISON)
    result = run("models", "compare", "digits-mlp", "1", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    first = next(line for line in lines if "│ 1 " in line)
    second = next(line for line in lines if "│ 2 " in line)
    for cell in ("safetensors", "410.2 KiB", "408.2 KiB", "26122", "0.090", "0.210", "0.9667"):
        assert cell in first
    for cell in ("107.4 KiB", "104.5 KiB", "0.070", "0.150", "accuracy 0.9644"):
        assert cell in second
    assert "delta (v2 - v1): accuracy -0.0023, latency_ms_batch_1 -0.020 ms, " in result.stdout
    assert "weight_bytes -303.7 KiB" in result.stdout
    assert "ratio (v1 / v2): latency_batch_1 1.29x, weight_bytes 3.91x" in result.stdout
    assert "Not measured on the same data set" not in result.stderr


def test_compare_json_prints_the_servers_answer(api: FakeAPI) -> None:
    api.routes["GET", "/api/v1/models/digits-mlp/versions/1/compare/production"] = answer(
        200, {**COMPARISON, "comparable": False}
    )
    result = run("models", "compare", "digits-mlp", "1", "production", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {**COMPARISON, "comparable": False}


def test_compare_of_unmeasured_versions_says_so(api: FakeAPI) -> None:
    rows = [
        {"version": 1, "format": "keras", "size_bytes": 2048, "recorded_metrics": {"acc": 0.9}},
        {"version": 2, "format": "onnx", "size_bytes": 1024, "recorded_metrics": {}},
    ]
    body = {"versions": rows, "delta": {}, "ratio": {}, "comparable": False}
    api.routes["GET", COMPARE_PATH] = answer(200, body)
    result = run("models", "compare", "digits-mlp", "1", "2")
    assert result.exit_code == 0, result.output
    assert "acc 0.9" in result.stdout and "2.0 KiB" in result.stdout
    assert "delta" not in result.stdout
    assert "Not measured on the same data set" in result.stderr


@pytest.mark.parametrize(
    ("flags", "method"),
    [
        (["--method", "quantize"], {"name": "quantize", "scheme": "dynamic_int8"}),
        (
            ["--method", "quantize", "--scheme", "weight_int4"],
            {"name": "quantize", "scheme": "weight_int4"},
        ),
        (
            ["--method", "prune", "--sparsity", "0.8"],
            {"name": "prune", "kind": "unstructured", "sparsity": 0.8},
        ),
        (
            ["--method", "prune", "--kind", "structured", "--amount", "0.5"],
            {"name": "prune", "kind": "structured", "amount": 0.5},
        ),
        (["--method", "cast"], {"name": "cast", "dtype": "float16"}),
        (["--method", "cast", "--dtype", "bfloat16"], {"name": "cast", "dtype": "bfloat16"}),
        (["--method", "export", "--format", "onnx"], {"name": "export", "format": "onnx"}),
    ],
)
def test_compress_submits_the_method_the_flags_describe(
    api: FakeAPI, flags: list[str], method: dict[str, Any]
) -> None:
    api.routes["POST", "/api/v1/jobs"] = answer(201, job())
    result = run(
        "compress", "digits-mlp", "--version", "1", *flags, "--eval-dataset", "digits-test"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == JOB_ID
    assert sent(api) == {
        "type": "compress",
        "source": {"model": "digits-mlp", "version": 1},
        "method": method,
        "eval_dataset": "digits-test",
    }


def test_compress_sends_the_gate_and_output_model(api: FakeAPI) -> None:
    api.routes["POST", "/api/v1/jobs"] = answer(201, job())
    result = run(
        "compress",
        "digits-mlp",
        "--version",
        "production",
        "--method",
        "quantize",
        "--eval-dataset",
        "digits-test",
        "--max-metric-drop",
        "0.01",
        "--output-model",
        "digits-int8",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == JOB_ID
    body = sent(api)
    assert body["source"] == {"model": "digits-mlp", "version": "production"}
    assert body["gate"] == {"max_metric_drop": 0.01}
    assert body["output_model"] == "digits-int8"


@pytest.mark.parametrize(
    ("flags", "hint"),
    [
        (["--method", "quantize", "--sparsity", "0.5"], "--sparsity applies to --method prune"),
        (["--method", "cast", "--format", "onnx"], "--format applies to --method export"),
        (["--method", "prune"], "unstructured pruning needs --sparsity"),
        (["--method", "prune", "--kind", "structured"], "structured pruning needs --amount"),
        (["--method", "shrink"], "'shrink' is not one of"),
    ],
)
def test_compress_refuses_flags_that_do_not_fit_before_sending(
    api: FakeAPI, flags: list[str], hint: str
) -> None:
    result = run("compress", "m", "--version", "1", *flags, "--eval-dataset", "d")
    assert result.exit_code == 2
    assert hint in " ".join(result.stderr.split()).replace("│", "").replace("  ", " ")
    assert api.requests == []


def test_compress_follow_shows_the_report(api: FakeAPI) -> None:
    report = {
        "metric": "accuracy",
        "parent": PARENT,
        "child": CHILD,
        "delta": {"weight_bytes": -311000, "accuracy": -0.0023},
        "ratio": {"weight_bytes": 3.906},
        "metric_drop": 0.0023,
    }
    result_body = {"model": "digits-mlp", "version": 2, "method": "quantize", "report": report}
    done = job("succeeded", result=result_body)
    api.routes["POST", "/api/v1/jobs"] = answer(201, job())
    api.routes["GET", JOB_PATH] = answer(200, done)
    api.routes["GET", f"{JOB_PATH}/events"] = lambda _r: httpx.Response(
        200,
        headers={"content-type": "text/event-stream"},
        content=b"event: end\ndata: {}\n\n",
    )
    result = run(
        "compress",
        "digits-mlp",
        "--version",
        "1",
        "--method",
        "quantize",
        "--eval-dataset",
        "digits-test",
        "--follow",
    )
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.stdout
    assert "Report" in result.stdout
    assert "accuracy 0.9644" in result.stdout
    assert "ratio (v1 / v2): weight_bytes 3.91x" in result.stdout


def test_compress_follow_of_a_failed_job_exits_1_with_the_reason(api: FakeAPI) -> None:
    failed = job("failed", error="gate: accuracy fell by 0.2000")
    api.routes["POST", "/api/v1/jobs"] = answer(201, job())
    api.routes["GET", JOB_PATH] = answer(200, failed)
    api.routes["GET", f"{JOB_PATH}/events"] = lambda _r: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=b"event: end\ndata: {}\n\n"
    )
    result = run("compress", "m", "--version", "1", "--method", "cast", "--eval-dataset", "d", "-f")
    assert result.exit_code == 1
    assert "gate: accuracy fell by 0.2000" in result.stderr
    assert f"modelyard jobs logs {JOB_ID}" in result.stderr


def test_distill_submits_the_student_from_its_file(api: FakeAPI, tmp_path: Path) -> None:
    student = tmp_path / "student.json"
    student.write_text(json.dumps({"arch": "mlp", "hidden": [16]}))
    api.routes["POST", "/api/v1/jobs"] = answer(201, job(type="distill"))
    result = run(
        "distill",
        "digits-mlp",
        "--version",
        "3",
        "--student",
        str(student),
        "--dataset",
        "digits-train",
        "--eval-dataset",
        "digits-test",
        "--temperature",
        "2",
        "--alpha",
        "0.5",
        "--epochs",
        "5",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == JOB_ID
    assert sent(api) == {
        "type": "distill",
        "teacher": {"model": "digits-mlp", "version": 3},
        "student": {"spec": {"arch": "mlp", "hidden": [16]}},
        "dataset": "digits-train",
        "eval_dataset": "digits-test",
        "temperature": 2.0,
        "alpha": 0.5,
        "epochs": 5,
    }


def test_distill_accepts_a_student_section_and_refuses_bad_json(
    api: FakeAPI, tmp_path: Path
) -> None:
    student = tmp_path / "student.json"
    student.write_text(json.dumps({"spec": {"arch": "cnn"}}))
    api.routes["POST", "/api/v1/jobs"] = answer(201, job(type="distill"))
    result = run("distill", "t", "--version", "1", "--student", str(student), "--dataset", "d")
    assert result.exit_code == 0, result.output
    body = sent(api)
    assert body["student"] == {"spec": {"arch": "cnn"}}
    assert body["eval_dataset"] == "d"
    assert "temperature" not in body

    student.write_text("[1, 2]")
    refused = run("distill", "t", "--version", "1", "--student", str(student), "--dataset", "d")
    assert refused.exit_code == 2
    assert "must be a JSON object" in refused.stderr


@pytest.fixture
def server(make_settings: Callable[..., object]) -> Iterator[LiveServer]:
    settings = make_settings(executor_slots=2, job_heartbeat_timeout_s=5)
    with live_server(settings) as srv:  # type: ignore[arg-type]
        yield srv


def test_compare_on_a_real_server(server: LiveServer, tmp_path: Path) -> None:
    with Client(server.url, server.admin_key) as client:
        job = train_and_quantize(client, tmp_path)
    report = job.result["report"]
    cli = ("--url", server.url, "--api-key", server.admin_key)

    result = run(*cli, "models", "compare", "digits-mlp", "1", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    parent = next(line for line in lines if "│ 1 " in line)
    child = next(line for line in lines if "│ 2 " in line)
    assert f"accuracy {report['parent']['metrics']['accuracy']:.4f}" in parent
    assert f"accuracy {report['child']['metrics']['accuracy']:.4f}" in child
    assert str(report["parent"]["params"]) in parent and str(report["child"]["params"]) in child
    ratio = f"weight_bytes {report['ratio']['weight_bytes']:.2f}x"
    assert ratio in next(line for line in lines if line.startswith("ratio (v1 / v2):"))
    assert any(line.startswith("delta (v2 - v1):") for line in lines)

    as_json = run(*cli, "models", "compare", "digits-mlp", "1", "2", "--json")
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout)
    assert [row["version"] for row in body["versions"]] == [1, 2]
    assert body["comparable"] is True
