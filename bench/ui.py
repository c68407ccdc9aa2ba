"""The dashboard's list pages with 10,000 jobs and 2,000 versions in the store.

Seeds a real server's database (SQLite) with jobs of every status and versions spread over
20 models, signs in through the sign-in form, and prints for each list page the median time
of a request and the response's size: each is one request of bounded size, whatever the
store holds (a page shows at most 100 rows). Printed, not asserted.
"""

from __future__ import annotations

import re
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import insert, select

from bench._server import server_process
from modelyard.db.engine import create_database
from modelyard.db.tables import Job, Model, ModelVersion, Principal

JOBS = 10_000
VERSIONS = 2_000
MODELS = 20
ROUNDS = 7
STATUSES = ("succeeded", "failed", "cancelled", "running", "queued")
SPEC = {"type": "train", "dataset": "digits", "config": {"epochs": 5, "batch_size": 64}}


def seed(database_url: str) -> None:
    """Write the jobs, models and versions straight into the store."""
    db = create_database(database_url)
    try:
        with db.session() as session:
            owner = session.scalar(select(Principal.id).where(Principal.name == "admin"))
            start = datetime.now(UTC) - timedelta(days=30)
            session.execute(
                insert(Job),
                [
                    {
                        "id": uuid.uuid4().hex,
                        "type": "train",
                        "status": STATUSES[i % len(STATUSES)],
                        "owner_id": owner,
                        "spec": SPEC,
                        "progress": 1.0 if i % len(STATUSES) < 3 else 0.5,
                        "metrics": {"val_accuracy": 0.9},
                        "created_at": start + timedelta(seconds=i),
                    }
                    for i in range(JOBS)
                ],
            )
            models = [
                {"id": uuid.uuid4().hex, "name": f"model-{m:02d}", "owner_id": owner}
                for m in range(MODELS)
            ]
            session.execute(insert(Model), models)
            per_model = VERSIONS // MODELS
            session.execute(
                insert(ModelVersion),
                [
                    {
                        "id": uuid.uuid4().hex,
                        "model_id": model["id"],
                        "version": v + 1,
                        "format": "safetensors",
                        "sha256": f"{v:064d}",
                        "size": 40_000,
                        "metrics": {"val_accuracy": 0.9, "val_loss": 0.3},
                        "params": {"config": {"optimizer": {"lr": 0.01}}},
                        "created_by_id": owner,
                        "parent_version": v if v else None,
                    }
                    for model in models
                    for v in range(per_model)
                ],
            )
    finally:
        db.dispose()


def main() -> None:
    with server_process() as server:
        seed(f"sqlite:///{server.data_dir / 'modelyard.db'}")
        with httpx.Client(base_url=server.url, timeout=60) as client:
            form = client.get("/ui/login").text
            token = re.search(r'name="csrf" value="([^"]+)"', form)
            assert token is not None
            reply = client.post(
                "/ui/login", data={"key": server.key, "csrf": token.group(1), "next": "/ui"}
            )
            assert reply.status_code == 303, reply.text
            pages = [
                "/ui",
                "/ui/jobs",
                "/ui/jobs?size=100",
                "/ui/jobs?status=succeeded&page=50",
                "/ui/jobs?page=400",
                "/ui/models",
                "/ui/models/model-07",
                "/ui/models/model-07?page=4",
                "/ui/models/model-07/versions/100",
                "/ui/models/model-07/compare?a=1&b=100",
                "/ui/datasets",
                "/ui/deployments",
                "/ui/keys",
            ]
            print(f"{JOBS} jobs, {VERSIONS} versions of {MODELS} models; median of {ROUNDS}")
            print(f"{'page':44} {'status':>6} {'ms':>8} {'bytes':>9}")
            for path in pages:
                times = []
                for _ in range(ROUNDS):
                    began = time.perf_counter()
                    reply = client.get(path)
                    times.append(time.perf_counter() - began)
                ms = statistics.median(times) * 1000
                print(f"{path:44} {reply.status_code:>6} {ms:>8.1f} {len(reply.content):>9}")


if __name__ == "__main__":
    main()
