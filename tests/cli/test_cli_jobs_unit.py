"""Unit tests of ``modelyard train``, ``modelyard jobs`` and the ``acl`` commands against a
fake API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.fake_api import FakeAPI, Route, answer, page, run

WHEN = "2024-05-01T12:00:00+00:00"
JOB_ID = "a" * 32
JOB_PATH = f"/api/v1/jobs/{JOB_ID}"
OWNER = {"id": "p" * 32, "name": "alice"}
RESULT = {
    "model": "digits-mlp",
    "version": 3,
    "metrics": {"train": {"loss": 0.05}, "val": {"loss": 0.1, "accuracy": 0.9731}},
    "epochs_run": 2,
}


def job(status: str = "queued", **extra: Any) -> dict[str, Any]:
    return {
        "id": JOB_ID,
        "type": "train",
        "status": status,
        "owner": OWNER,
        "spec": {"dataset": "digits", "output_model": "digits-mlp", "config": {"epochs": 2}},
        "progress": 1.0 if status == "succeeded" else 0.25,
        "eta_s": 12.0,
        "metrics": {},
        "result": RESULT if status == "succeeded" else None,
        "error": "CUDA out of memory" if status == "failed" else None,
        "attempt": 1,
        "created_at": WHEN,
        "started_at": WHEN,
        "finished_at": "2024-05-01T12:00:42+00:00" if status != "queued" else None,
        **extra,
    }


def frame(seq: int, kind: str, **data: Any) -> str:
    return f"id: {seq}\nevent: {kind}\ndata: {json.dumps({'seq': seq, 'at': WHEN, **data})}\n\n"


def stream(*frames: str) -> Route:
    body = "".join(frames) + "event: end\ndata: {}\n\n"
    return lambda _r: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=body.encode()
    )


def in_turn(*routes: Route) -> Route:
    """Answer with each route in turn; the last one repeats."""
    queue: Iterator[Route] = iter(routes)
    current = routes[0]

    def route(request: httpx.Request) -> httpx.Response:
        nonlocal current
        current = next(queue, current)
        return current(request)

    return route


EVENTS = [
    frame(1, "status", status="running", attempt=1),
    frame(2, "step", epoch=1, step=10, loss=0.5, lr=0.001, samples_per_s=900.0),
    frame(
        3,
        "epoch",
        epoch=1,
        epochs=2,
        train={"loss": 0.4},
        val={"accuracy": 0.9},
        progress=0.5,
        eta_s=1.0,
    ),
    frame(4, "log", message="half way"),
]


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"arch": "mlp", "hidden": [64]}))
    return path


# -- train -------------------------------------------------------------------------------


def test_train_submits_and_prints_the_id_alone(
    api: FakeAPI, spec_file: Path, tmp_path: Path
) -> None:
    api.routes["POST", "/api/v1/jobs"] = answer(201, job())
    config = tmp_path / "extra.json"
    config.write_text(
        json.dumps(
            {
                "schedule": {"name": "cosine"},
                "optimizer": {"name": "sgd", "momentum": 0.9, "lr": 0.5},
                "epochs": 99,
                "validation": {"seed": 3},
            }
        )
    )
    result = run(
        "train",
        "--spec",
        str(spec_file),
        "--dataset",
        "digits",
        "--label",
        "y",
        "--epochs",
        "5",
        "--optimizer",
        "adam",
        "--batch-size",
        "64",
        "--output-model",
        "digits-mlp",
        "--validation-split",
        "0.2",
        "--config",
        str(config),
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{JOB_ID}\n"
    assert f"jobs events {JOB_ID} --follow" in result.stderr
    assert json.loads(api.last.content) == {
        "type": "train",
        "model": {"spec": {"arch": "mlp", "hidden": [64]}},
        "dataset": "digits",
        "label": "y",
        "epochs": 5,
        "batch_size": 64,
        "output_model": "digits-mlp",
        "schedule": {"name": "cosine"},
        # A new optimizer keeps the rate but not the old one's momentum.
        "optimizer": {"name": "adam", "lr": 0.5},
        "validation": {"seed": 3, "fraction": 0.2},
    }


@pytest.mark.parametrize(
    ("spec", "model"),
    [
        ("cnn", {"spec": {"arch": "cnn"}}),
        ('{"arch": "rnn", "hidden": 8}', {"spec": {"arch": "rnn", "hidden": 8}}),
        (
            '{"from": "digits-mlp", "version": "production"}',
            {"from": "digits-mlp", "version": "production"},
        ),
    ],
)
def test_train_spec_may_be_a_name_or_inline_json(
    api: FakeAPI, spec: str, model: dict[str, Any]
) -> None:
    api.routes["POST", "/api/v1/jobs"] = answer(201, job())
    result = run("train", "--spec", spec, "--dataset", "digits", "--lr", "0.01", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(api.last.content)
    assert body["model"] == model
    assert body["optimizer"] == {"lr": 0.01}
    assert json.loads(result.stdout)["id"] == JOB_ID


def test_train_refuses_bad_input_before_any_request(api: FakeAPI, tmp_path: Path) -> None:
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    assert run("train", "--spec", "not a spec!", "--dataset", "d").exit_code == 2
    assert run("train", "--spec", "{oops", "--dataset", "d").exit_code == 2
    result = run("train", "--spec", "mlp", "--dataset", "d", "--config", str(listed))
    assert result.exit_code == 2
    assert "JSON object" in result.output
    assert run("train", "--spec", "mlp").exit_code == 2  # no --dataset
    assert api.requests == []


def test_train_follow_shows_progress_then_the_result(api: FakeAPI) -> None:
    api.routes["POST", "/api/v1/jobs"] = answer(201, job())
    api.routes["GET", JOB_PATH] = in_turn(
        answer(200, job("running")), answer(200, job("succeeded"))
    )
    api.routes["GET", f"{JOB_PATH}/events"] = stream(
        *EVENTS, frame(5, "status", status="succeeded")
    )
    result = run("train", "--spec", "mlp", "--dataset", "digits", "--follow")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any("Status" in ln and "succeeded" in ln for ln in lines)
    assert any("Model" in ln and "digits-mlp v3" in ln for ln in lines)
    assert any("val" in ln and "accuracy" in ln and "0.9731" in ln for ln in lines)
    assert any("Duration" in ln and "42.0 s" in ln for ln in lines)
    assert "epoch 1/2" in result.stderr


def test_train_follow_exits_1_when_the_job_fails(api: FakeAPI) -> None:
    api.routes["POST", "/api/v1/jobs"] = answer(201, job())
    api.routes["GET", JOB_PATH] = in_turn(answer(200, job("running")), answer(200, job("failed")))
    api.routes["GET", f"{JOB_PATH}/events"] = stream(
        *EVENTS, frame(5, "status", status="failed", error="CUDA out of memory")
    )
    result = run("train", "--spec", "mlp", "--dataset", "digits", "--follow", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "failed"
    assert f"Job {JOB_ID} failed: CUDA out of memory" in result.stderr
    assert f"modelyard jobs logs {JOB_ID}" in result.stderr


# -- jobs --------------------------------------------------------------------------------


def test_jobs_list_table_json_and_status_filter(api: FakeAPI) -> None:
    api.routes["GET", "/api/v1/jobs"] = page(job("succeeded"), job("running", id="b" * 32))
    table = run("jobs", "list")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert any(JOB_ID in ln and "succeeded" in ln and "digits-mlp v3" in ln for ln in lines)
    assert any("b" * 32 in ln and "running" in ln and "25%" in ln for ln in lines)
    listed = run("jobs", "list", "--status", "running", "--json")
    assert api.last.url.params["status"] == "running"
    assert [j["id"] for j in json.loads(listed.stdout)] == [JOB_ID, "b" * 32]


def test_jobs_show_has_state_metrics_and_error(api: FakeAPI) -> None:
    api.routes["GET", JOB_PATH] = answer(200, job("failed", metrics={"val": {"loss": 0.7}}))
    result = run("jobs", "show", JOB_ID)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any("Error" in ln and "CUDA out of memory" in ln for ln in lines)
    assert any("val" in ln and "loss" in ln and "0.7" in ln for ln in lines)
    assert json.loads(run("jobs", "show", JOB_ID, "--json").stdout)["status"] == "failed"


def test_jobs_logs_and_cancel(api: FakeAPI) -> None:
    log = "2024-05-01 12:00:00 [status] status=queued\n"
    api.routes["GET", f"{JOB_PATH}/logs"] = lambda _r: httpx.Response(200, text=log)
    api.routes["POST", f"{JOB_PATH}/cancel"] = answer(200, job("running"))
    logs = run("jobs", "logs", JOB_ID)
    assert (logs.exit_code, logs.stdout) == (0, log)
    cancelled = run("jobs", "cancel", JOB_ID)
    assert cancelled.exit_code == 0
    assert api.last.method == "POST"
    assert f"Cancelling job {JOB_ID}" in cancelled.stderr


def test_jobs_events_list_and_follow(api: FakeAPI) -> None:
    items = [
        {"seq": 1, "at": WHEN, "type": "status", "data": {"status": "queued"}},
        {"seq": 2, "at": WHEN, "type": "log", "data": {"message": "training mlp"}},
    ]
    api.routes["GET", f"{JOB_PATH}/events"] = answer(200, {"items": items, "total": 2})
    table = run("jobs", "events", JOB_ID, "--after", "0")
    assert table.exit_code == 0, table.output
    assert any("log" in ln and "training mlp" in ln for ln in table.stdout.splitlines())
    assert json.loads(run("jobs", "events", JOB_ID, "--json").stdout) == items

    api.routes["GET", f"{JOB_PATH}/events"] = stream(*EVENTS)
    followed = run("jobs", "events", JOB_ID, "--follow", "--after", "1")
    assert followed.exit_code == 0, followed.output
    assert api.last.headers["last-event-id"] == "1"
    # What the client has seen already is not printed again, even if the server resends it.
    assert followed.stdout.splitlines() == [
        "#2 12:00:00 step       epoch 1 step 10 loss 0.5 lr 0.001",
        "#3 12:00:00 epoch      epoch 1/2  train loss=0.4  val accuracy=0.9",
        "#4 12:00:00 log        half way",
    ]
    as_lines = run("jobs", "events", JOB_ID, "-f", "--json").stdout.splitlines()
    assert [json.loads(line)["seq"] for line in as_lines] == [1, 2, 3, 4]
    assert json.loads(as_lines[3])["data"] == {"message": "half way"}


def test_a_missing_job_exits_1(api: FakeAPI) -> None:
    result = run("jobs", "show", "nope")
    assert result.exit_code == 1
    assert "Error 404" in result.stderr


# -- acl ---------------------------------------------------------------------------------


@pytest.mark.parametrize("group", ["datasets", "models"])
def test_acl_shows_and_changes_grants(api: FakeAPI, group: str) -> None:
    grants = [
        {"principal": "bob", "permission": "read"},
        {"principal": "eve", "permission": "write"},
    ]
    current = {"public": False, "grants": grants}
    path = f"/api/v1/{group}/digits/acl"
    api.routes["GET", path] = answer(200, current)
    api.routes["PUT", path] = lambda r: httpx.Response(200, content=r.content)

    shown = run(group, "acl", "digits")
    assert shown.exit_code == 0, shown.output
    assert any("eve" in ln and "write" in ln for ln in shown.stdout.splitlines())
    assert api.last.method == "GET"

    changed = run(
        group,
        "acl",
        "digits",
        "--public",
        "--grant",
        "bob:write",
        "--grant",
        "carol",
        "--revoke",
        "eve",
        "--json",
    )
    assert changed.exit_code == 0, changed.output
    sent = json.loads(api.last.content)
    assert sent == {
        "public": True,
        "grants": [
            {"principal": "bob", "permission": "write"},
            {"principal": "carol", "permission": "read"},
        ],
    }
    assert json.loads(changed.stdout) == sent

    private = run(group, "acl", "digits", "--private")
    assert private.exit_code == 0
    assert json.loads(api.last.content)["grants"] == current["grants"]
    assert json.loads(api.last.content)["public"] is False


def test_acl_refuses_a_bad_grant(api: FakeAPI) -> None:
    result = run("datasets", "acl", "digits", "--grant", "bob:own")
    assert result.exit_code == 2
    assert "PRINCIPAL:read" in result.output
    assert api.requests == []


def test_demo_against_a_server_needs_a_key(api: FakeAPI) -> None:
    result = run("--url", "http://elsewhere:1", "demo")
    assert result.exit_code == 2
    assert "--api-key" in result.output
    assert api.requests == []
