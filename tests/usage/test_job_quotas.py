"""Jobs: a project at its running-jobs limit gets its next job refused before anything is
queued; a spent hard budget refuses requests and jobs; every finished job is metered."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.jobs.conftest import train_body, upload_digits
from tests.support.server import LiveServer
from tests.usage.conftest import make_key, predict
from tests.usage.test_rate_limits import _project_of


def test_a_project_at_its_running_jobs_limit_gets_the_next_job_refused(
    served: LiveServer, admin: httpx.Client, tmp_path: Path
) -> None:
    key = make_key(admin, "trainer", ["read", "write"])
    project = _project_of(served, key.id)
    reply = admin.put(f"/api/v1/limits/projects/{project}", json={"running_jobs": 1})
    assert reply.status_code == 200, reply.text
    with key.client(served.url) as trainer:
        upload_digits(trainer, tmp_path)
        first = trainer.post("/api/v1/jobs", json=train_body(epochs=500))
        assert first.status_code == 201, first.text
        refused = trainer.post("/api/v1/jobs", json=train_body(epochs=1))
        assert refused.status_code == 429, refused.text
        problem = refused.json()
        assert problem["type"].endswith("/quota-exceeded")
        assert problem["quota"] == "running_jobs"
        assert "1 running jobs" in problem["detail"]
        jobs = trainer.get("/api/v1/jobs").json()
        assert jobs["total"] == 1  # nothing was queued
        job_id = first.json()["id"]
        trainer.post(f"/api/v1/jobs/{job_id}/cancel").raise_for_status()
        deadline = time.monotonic() + 60
        while trainer.get(f"/api/v1/jobs/{job_id}").json()["status"] != "cancelled":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        # Its usage was written as it finished: a job row with its wall time.
        usage = admin.get(
            "/api/v1/usage",
            params={"start": int(time.time()) - 300, "bucket_width": "1h", "kinds": "job"},
        ).json()
        rows = [r for b in usage["data"] for r in b["results"]]
        assert sum(r["num_model_requests"] for r in rows) == 1
        assert rows[0]["wall_seconds"] > 0
        # The slot is free again.
        again = trainer.post("/api/v1/jobs", json=train_body(epochs=1))
        assert again.status_code == 201, again.text


def test_a_spent_hard_budget_refuses_the_next_request_and_a_soft_one_warns(
    make_settings: object, tmp_path: Path
) -> None:
    from modelyard.config import Prices
    from tests.serving.conftest import MLP, deploy, push_catalog
    from tests.support.server import live_server

    prices = Prices(per_1k_requests=1000.0)  # a dollar a request
    settings = make_settings(usage_flush_s=0.1, limits_cache_s=0.2, prices=prices)  # type: ignore[operator]
    with live_server(settings) as srv:
        auth = {"Authorization": f"Bearer {srv.admin_key}"}
        with httpx.Client(base_url=srv.url, headers=auth, timeout=120) as admin:
            push_catalog(admin, "mlp", MLP, tmp_path)
            deploy(admin, "mlp", model="mlp", version=1)
            admin.put("/api/v1/deployments/mlp/acl", json={"public": True, "grants": []})
            key = make_key(admin, "spender", ["infer", "read", "write"])
            project = _project_of(srv, key.id)
            reply = admin.put(f"/api/v1/budgets/{project}", json={"soft_usd": 2, "hard_usd": 3})
            assert reply.status_code == 200, reply.text
            assert reply.json()["spent_usd"] == 0
            with key.client(srv.url) as spender:
                answers = []
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    answer = predict(spender)
                    answers.append(answer)
                    if answer.status_code != 200:
                        break
                    time.sleep(0.3)  # lets the spending be written and read back
                refused = answers[-1]
                assert refused.status_code == 402, refused.text
                assert refused.json()["type"].endswith("/budget-spent")
                assert "budget" in refused.json()["detail"]
                assert 3 <= len(answers) - 1 <= 5  # about three dollars were spent
                assert any("x-modelyard-budget" in a.headers for a in answers[:-1])
                job = spender.post("/api/v1/jobs", json=train_body(epochs=1))
                assert job.status_code == 402, job.text
            budget = admin.get(f"/api/v1/budgets/{project}").json()
            assert budget["spent_usd"] >= 3
            audit = admin.get("/api/v1/audit", params={"action": "budget.soft_limit_reached"})
            if audit.status_code == 200:
                assert audit.json()["total"] == 1
            costs = admin.get(
                "/api/v1/costs",
                params={"start": int(time.time()) - 300, "group_by": "project,line_item"},
            ).json()
            lines = [r for b in costs["data"] for r in b["results"] if r["line_item"] == "requests"]
            assert sum(r["amount"]["value"] for r in lines) >= 3


def test_compute_seconds_and_stored_bytes_quotas_refuse_before_anything_is_written(
    served: LiveServer, admin: httpx.Client, tmp_path: Path
) -> None:
    from tests.support.data import digits_npz

    key = make_key(admin, "hoarder", ["read", "write"])
    project = _project_of(served, key.id)
    limits = {"cpu_seconds_per_day": 0, "stored_bytes": 1000}
    admin.put(f"/api/v1/limits/projects/{project}", json=limits).raise_for_status()
    with key.client(served.url) as hoarder:
        npz = digits_npz(tmp_path / "d.npz").read_bytes()
        refused = hoarder.post(
            "/api/v1/datasets",
            params={"name": "digits", "label": "y", "filename": "d.npz"},
            content=npz,
        )
        assert refused.status_code == 429, refused.text
        assert refused.json()["quota"] == "stored_bytes"
        assert hoarder.get("/api/v1/datasets").json()["total"] == 0
        job = hoarder.post("/api/v1/jobs", json=train_body(epochs=1))
        assert job.status_code == 429, job.text
        assert job.json()["quota"] == "cpu_seconds_per_day"
        assert hoarder.get("/api/v1/jobs").json()["total"] == 0
