"""Unit tests of ``modelyard deploy``, ``deployments`` and ``predict`` against a fake API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.cli.fake_api import FakeAPI, answer, page, run

WHEN = "2024-05-01T12:00:00+00:00"
OWNER = {"id": "p" * 32, "name": "alice"}
SPEC = {
    "model": "digits-mlp",
    "version": "production",
    "traffic": None,
    "pipeline": None,
    "runtime": "auto",
    "device": "cpu",
    "replicas": 2,
    "max_batch_size": 64,
    "max_batch_delay_ms": 5.0,
    "max_queue": 1024,
    "timeout_ms": 30000.0,
    "postprocess": {"softmax": False, "top_k": None},
}
TENSORS = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}],
    "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}],
}


def deployment(**extra: Any) -> dict[str, Any]:
    return {
        "id": "e" * 32,
        "name": "digits",
        "spec": dict(SPEC),
        "status": "ready",
        "error": None,
        "versions": [{"version": 2, "weight": 1.0, "runtime": "torch", **TENSORS}],
        "owner": OWNER,
        "public": False,
        "created_at": WHEN,
        "updated_at": WHEN,
        **extra,
    }


def sent(api: FakeAPI, method: str, path: str) -> Any:
    [request] = [r for r in api.requests if (r.method, r.url.path) == (method, path)]
    return json.loads(request.content)


# -- deploy --------------------------------------------------------------------------------


def test_deploy_sends_the_flags_and_prints_the_deployment(api: FakeAPI) -> None:
    api.routes["POST", "/api/v1/deployments"] = answer(201, deployment())
    result = run(
        "deploy",
        "digits",
        "--model",
        "digits-mlp@production",
        "--device",
        "cpu",
        "--replicas",
        "2",
        "--max-batch-size",
        "64",
        "--max-batch-delay-ms",
        "5",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(api.last.content) == {
        "name": "digits",
        "model": "digits-mlp",
        "version": "production",
        "device": "cpu",
        "replicas": 2,
        "max_batch_size": 64,
        "max_batch_delay_ms": 5.0,
    }
    assert "Deployed digits: digits-mlp v2" in result.stderr
    lines = result.stdout.splitlines()
    assert any("Status" in ln and "ready" in ln for ln in lines)
    assert any("Batching" in ln and "up to 64 rows, waiting up to 5 ms" in ln for ln in lines)
    assert any("v2" in ln and "100%" in ln and "input FP32 [-1, 64]" in ln for ln in lines)


def test_deploy_with_canaries_splits_the_traffic(api: FakeAPI) -> None:
    split = [{"version": "2", "weight": 80.0}, {"version": "3", "weight": 20.0}]
    versions = [
        {"version": 2, "weight": 80.0, "runtime": "torch", **TENSORS},
        {"version": 3, "weight": 20.0, "runtime": "torch", **TENSORS},
    ]
    api.routes["POST", "/api/v1/deployments"] = answer(
        201, deployment(spec={**SPEC, "traffic": split}, versions=versions)
    )
    result = run(
        "deploy", "digits", "-m", "digits-mlp@2", "--canary", "3:15", "--canary", "3:5", "--json"
    )
    assert result.exit_code == 0, result.output
    body = json.loads(api.last.content)
    assert body["traffic"] == [
        {"version": "2", "weight": 80.0},
        {"version": "3", "weight": 15.0},
        {"version": "3", "weight": 5.0},
    ]
    assert json.loads(result.stdout)["versions"][1]["weight"] == 20.0


def test_deploy_a_pipeline_with_postprocessing(api: FakeAPI) -> None:
    spec = {**SPEC, "model": None, "pipeline": ["embed", "classify"]}
    api.routes["POST", "/api/v1/deployments"] = answer(201, deployment(spec=spec, versions=[]))
    result = run("deploy", "chain", "--pipeline", "embed,classify", "--softmax", "--top-k", "3")
    assert result.exit_code == 0, result.output
    body = json.loads(api.last.content)
    assert body["pipeline"] == ["embed", "classify"]
    assert body["postprocess"] == {"softmax": True, "top_k": 3}
    assert "embed → classify" in result.stderr


def test_deploy_sends_only_the_postprocessing_asked_for(api: FakeAPI) -> None:
    api.routes["POST", "/api/v1/deployments"] = answer(201, deployment())
    result = run("deploy", "digits", "--model", "digits-mlp", "--top-k", "2")
    assert result.exit_code == 0, result.output
    assert json.loads(api.last.content) == {
        "name": "digits",
        "model": "digits-mlp",
        "version": "latest",
        "postprocess": {"top_k": 2},
    }


@pytest.mark.parametrize(
    "args",
    [
        ("deploy", "d"),
        ("deploy", "d", "--model", "m", "--pipeline", "a,b"),
        ("deploy", "d", "--model", "m", "--canary", "3"),
        ("deploy", "d", "--model", "m", "--canary", "3:100"),
        ("deploy", "d", "--model", "m", "--canary", "3:60", "--canary", "4:40"),
        ("deploy", "d", "--pipeline", "a,b", "--canary", "3:10"),
        ("deploy", "d", "--model", "m", "--replicas", "0"),
        ("deployments", "update", "d"),
    ],
)
def test_usage_errors_exit_2_without_a_request(api: FakeAPI, args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert api.requests == []


def test_a_server_refusal_is_reported(api: FakeAPI) -> None:
    problem = {"title": "Invalid input", "status": 422, "detail": "model: no version 9 of 'm'"}
    api.routes["POST", "/api/v1/deployments"] = answer(422, problem)
    result = run("deploy", "d", "--model", "m@9")
    assert result.exit_code == 1
    assert "Error 422: Invalid input — model: no version 9 of 'm'" in result.stderr


# -- deployments ---------------------------------------------------------------------------


def test_deployments_list_show_and_rm(api: FakeAPI) -> None:
    api.routes["GET", "/api/v1/deployments"] = page(deployment())
    api.routes["GET", "/api/v1/deployments/digits"] = answer(200, deployment())
    api.routes["DELETE", "/api/v1/deployments/digits"] = lambda _r: httpx.Response(204)

    listed = run("deployments", "list")
    assert listed.exit_code == 0, listed.output
    assert any(
        "digits" in ln and "digits-mlp v2" in ln and "ready" in ln and "alice" in ln
        for ln in listed.stdout.splitlines()
    )
    assert [d["name"] for d in json.loads(run("deployments", "list", "--json").stdout)] == [
        "digits"
    ]
    shown = run("deployments", "show", "digits")
    assert any("Version" in ln and "production" in ln for ln in shown.stdout.splitlines())
    removed = run("deployments", "rm", "digits")
    assert removed.exit_code == 0
    assert "Deleted deployment digits" in removed.stderr
    assert api.last.method == "DELETE"


def test_deployments_update_version_ends_a_split(api: FakeAPI) -> None:
    api.routes["PATCH", "/api/v1/deployments/digits"] = answer(200, deployment())
    result = run("deployments", "update", "digits", "--version", "3", "--max-batch-size", "8")
    assert result.exit_code == 0, result.output
    assert json.loads(api.last.content) == {"version": "3", "max_batch_size": 8, "traffic": None}
    assert "Updated digits" in result.stderr


def test_deployments_update_canary_keeps_the_current_version_as_the_main_one(
    api: FakeAPI,
) -> None:
    api.routes["GET", "/api/v1/deployments/digits"] = answer(200, deployment())
    api.routes["PATCH", "/api/v1/deployments/digits"] = answer(200, deployment())
    result = run("deployments", "update", "digits", "--canary", "4:10")
    assert result.exit_code == 0, result.output
    assert sent(api, "PATCH", "/api/v1/deployments/digits") == {
        "traffic": [
            {"version": "production", "weight": 90.0},
            {"version": "4", "weight": 10.0},
        ]
    }


def test_deployments_acl_grants_read(api: FakeAPI) -> None:
    acl = {"public": False, "grants": []}
    api.routes["GET", "/api/v1/deployments/digits/acl"] = answer(200, acl)
    api.routes["PUT", "/api/v1/deployments/digits/acl"] = lambda r: httpx.Response(
        200, content=r.content
    )
    result = run("deployments", "acl", "digits", "--grant", "bob:read")
    assert result.exit_code == 0, result.output
    assert json.loads(api.last.content) == {
        "public": False,
        "grants": [{"principal": "bob", "permission": "read"}],
    }


# -- predict -------------------------------------------------------------------------------


@pytest.fixture
def served(api: FakeAPI) -> FakeAPI:
    """A deployment whose predictions are three scores per row, the row's index first."""
    api.routes["GET", "/api/v1/deployments/digits"] = answer(200, deployment())

    def predict(request: httpx.Request) -> httpx.Response:
        rows = len(json.loads(request.content)["inputs"])
        outputs = {"output": [[float(i), 0.5, 2.0 * i] for i in range(rows)]}
        return httpx.Response(
            200, json={"deployment": "digits", "model_version": 2, "outputs": outputs}
        )

    api.routes["POST", "/api/v1/deployments/digits/predict"] = predict
    return api


def inputs_sent(api: FakeAPI) -> Any:
    return sent(api, "POST", "/api/v1/deployments/digits/predict")["inputs"]


def test_predict_reads_npy_and_prints_a_table(served: FakeAPI, tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.arange(6, dtype=np.float32).reshape(2, 3))
    result = run("predict", "digits", "--input", str(path))
    assert result.exit_code == 0, result.output
    assert inputs_sent(served) == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    lines = result.stdout.splitlines()
    assert any("output (float32, shape (2, 3))" in ln for ln in lines)
    assert any("Argmax" in ln for ln in lines)
    # Row 1 scores [1, 0.5, 2]: the best is column 2.
    assert any(
        ln.split() == ["│", "1", "│", "1", "│", "0.5", "│", "2", "│", "2", "│"] for ln in lines
    )


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("x.json", json.dumps({"inputs": [[1, 2], [3, 4]]})),
        ("x.json", json.dumps([[1, 2], [3, 4]])),
        ("x.csv", "a,b\n1,2\n3,4\n"),
        ("x.csv", "1,2\n3,4\n"),
    ],
)
def test_predict_reads_json_and_csv(
    served: FakeAPI, tmp_path: Path, name: str, content: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    result = run("predict", "digits", "--input", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert inputs_sent(served) == [[1.0, 2.0], [3.0, 4.0]]
    assert json.loads(result.stdout) == {
        "deployment": "digits",
        "outputs": {"output": [[0.0, 0.5, 0.0], [1.0, 0.5, 2.0]]},
    }


def test_predict_sends_each_npz_array_as_a_named_input(api: FakeAPI, tmp_path: Path) -> None:
    api.routes["GET", "/api/v1/deployments/digits"] = answer(200, deployment())
    outputs = {"output": [[1.0]], "probabilities": [[1.0]]}
    api.routes["POST", "/api/v1/deployments/digits/predict"] = answer(
        200, {"deployment": "digits", "model_version": 2, "outputs": outputs}
    )
    path = tmp_path / "x.npz"
    np.savez(path, tokens=np.array([[1, 2]]), mask=np.array([[1, 1]]))
    result = run("predict", "digits", "-i", str(path), "--version", "2")
    assert result.exit_code == 0, result.output
    body = json.loads(api.last.content)
    assert body == {"inputs": {"tokens": [[1, 2]], "mask": [[1, 1]]}, "version": "2"}
    assert "probabilities (float32, shape (1, 1))" in result.stdout


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".json"])
def test_predict_saves_the_outputs(served: FakeAPI, tmp_path: Path, suffix: str) -> None:
    source = tmp_path / "x.npy"
    np.save(source, np.zeros((3, 2), np.float32))
    target = tmp_path / f"out{suffix}"
    result = run("predict", "digits", "-i", str(source), "--output", str(target))
    assert result.exit_code == 0, result.output
    assert f"Saved output to {target}" in result.stderr
    expected = [[0.0, 0.5, 0.0], [1.0, 0.5, 2.0], [2.0, 0.5, 4.0]]
    if suffix == ".npy":
        saved = np.load(target)
    elif suffix == ".npz":
        with np.load(target) as npz:
            saved = npz["output"]
    else:
        saved = np.asarray(json.loads(target.read_text())["outputs"]["output"])
    np.testing.assert_array_equal(saved, expected)


def test_predict_refuses_unreadable_inputs_and_unknown_outputs(
    served: FakeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ragged = tmp_path / "ragged.json"
    ragged.write_text(json.dumps({"inputs": [[1, 2], [3]]}))
    words = tmp_path / "words.csv"
    words.write_text("a,b\n1,x\n")
    other = tmp_path / "x.txt"
    other.write_text("1 2")
    source = tmp_path / "x.npy"
    np.save(source, np.zeros((1, 2)))
    for args in (
        ("-i", str(ragged)),
        ("-i", str(words)),
        ("-i", str(other)),
        ("-i", str(source), "-o", str(tmp_path / "out.csv")),
    ):
        result = run("predict", "digits", *args)
        assert result.exit_code == 2, result.output
    # A short relative path keeps the message on one line of the error box.
    monkeypatch.chdir(tmp_path)
    assert "ragged.json: inputs: the rows are not all the same length" in (
        run("predict", "digits", "-i", "ragged.json").stderr
    )
    assert served.requests == []


def test_long_outputs_are_cut_in_the_table(served: FakeAPI, tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((60, 2), np.float32))
    result = run("predict", "digits", "-i", str(path))
    assert result.exit_code == 0, result.output
    assert "Showing 50 of 60 rows" in result.stderr
    assert any(ln.split()[:3] == ["│", "49", "│"] for ln in result.stdout.splitlines())
    assert not any(ln.split()[:3] == ["│", "50", "│"] for ln in result.stdout.splitlines())
