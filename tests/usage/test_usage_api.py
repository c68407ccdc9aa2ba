"""What /api/v1/usage reports is what was sent: requests and rows summed by key and by
deployment; callers see only their own; old rows roll up into wider buckets."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.support.server import LiveServer
from tests.usage.conftest import make_key, predict


def totals(page: dict[str, Any], *fields: str) -> dict[tuple[Any, ...], dict[str, int]]:
    assert page["object"] == "page"
    found: dict[tuple[Any, ...], dict[str, int]] = {}
    for bucket in page["data"]:
        assert bucket["object"] == "bucket"
        assert bucket["end_time"] > bucket["start_time"]
        for result in bucket["results"]:
            key = tuple(result[f] for f in fields)
            sums = found.setdefault(key, {"requests": 0, "rows": 0})
            sums["requests"] += result["num_model_requests"]
            sums["rows"] += result["rows"]
    return found


def wait_for_usage(admin: httpx.Client, params: dict[str, Any], requests: int) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        page: dict[str, Any] = admin.get("/api/v1/usage", params=params).json()
        seen = sum(r["num_model_requests"] for b in page["data"] for r in b["results"])
        if seen >= requests or time.monotonic() > deadline:
            return page
        time.sleep(0.2)


def test_usage_sums_to_what_was_sent_by_key_and_by_deployment(
    served: LiveServer, admin: httpx.Client
) -> None:
    start = int(time.time()) - 5
    alice = make_key(admin, "alice", ["infer", "read"])
    bob = make_key(admin, "bob", ["infer", "read"])
    sent = {(alice.id, "mlp"): 3, (alice.id, "mlp2"): 2, (bob.id, "mlp"): 4}
    with alice.client(served.url) as a, bob.client(served.url) as b:
        clients = {alice.id: a, bob.id: b}
        for (key, deployment), count in sent.items():
            for _ in range(count):
                assert predict(clients[key], deployment, rows=2).status_code == 200
    params: dict[str, Any] = {"start": start, "bucket_width": "1m", "group_by": "key,deployment"}
    page = wait_for_usage(admin, params, sum(sent.values()))
    found = totals(page, "api_key_id", "deployment")
    for (key, deployment), count in sent.items():
        assert found[(key, deployment)] == {"requests": count, "rows": 2 * count}
    result = next(r for b in page["data"] for r in b["results"])
    assert result["object"] == "modelyard.usage.result"
    assert result["project_id"] is None  # not grouped by project
    assert result["compute_seconds"] > 0

    by_deployment = totals(
        admin.get(
            "/api/v1/usage", params={"start": start, "bucket_width": "1d", "group_by": "deployment"}
        ).json(),
        "deployment",
    )
    assert by_deployment[("mlp",)]["requests"] == 7
    assert by_deployment[("mlp2",)]["requests"] == 2

    # A caller sees only its own use.
    with bob.client(served.url) as b:
        mine = totals(b.get("/api/v1/usage", params=params).json(), "api_key_id", "deployment")
    assert set(mine) == {(bob.id, "mlp")}

    bad = admin.get("/api/v1/usage", params={"start": start, "bucket_width": "2m"})
    assert bad.status_code == 422
    bad = admin.get("/api/v1/usage", params={"start": start, "group_by": "colour"})
    assert bad.status_code == 422


def test_old_rows_roll_up_into_wider_buckets_and_keep_their_sums(served: LiveServer) -> None:
    from sqlalchemy import func, insert, select

    from modelyard.db.tables import UsageRecord
    from modelyard.usage.report import rollup

    db = served.platform.db
    day = 86400
    old = (int(time.time()) // day - 200) * day  # 200 days ago: rolled up to days
    base = {
        "kind": "inference",
        "project_id": "p",
        "key_id": "k",
        "principal_id": "u",
        "deployment": "d",
        "model": "m",
        "version": 1,
        "job_id": None,
        "status": "ok",
        "rows": 1,
        "input_tokens": 0,
        "output_tokens": 0,
        "compute_s": 0.5,
        "cpu_s": 0.0,
        "gpu_s": 0.0,
        "wall_s": 0.0,
        "peak_memory_bytes": 0,
        "bytes_written": 0,
    }
    rows = [
        {**base, "start_time": old + minute * 60, "width": 0, "requests": 2}
        for minute in range(0, 600, 7)
    ]
    with db.session() as session:
        session.execute(insert(UsageRecord), rows)
    rollup(db, time.time(), served.platform.settings)
    with db.session() as session:
        left = session.execute(
            select(UsageRecord.width, func.count(), func.sum(UsageRecord.requests))
            .where(UsageRecord.deployment == "d")
            .group_by(UsageRecord.width)
        ).all()
    assert [(w, n, s) for w, n, s in left] == [(day, 1, 2 * len(rows))]
