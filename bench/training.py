"""Training throughput through the job system vs a hand-written PyTorch loop, and job latency.

Both sides train the same model (built from the same spec, from the same weights) on the same
synthetic MNIST-shaped data with the same batch size, optimizer and thread count. The job goes
through a real server: POST /api/v1/jobs, the local executor, a worker process, the training
loop, with its events, heartbeats and per-epoch checkpoints; its samples/s come from its own
step events' timestamps. The hand-written loop runs in this process while the server idles.
Rounds alternate the two sides (the order flips each round) so that bursts of other work on
the host hit both alike; each round's ratio pairs a job run with the hand-written run next to
it, and the table gives the median ratio and the range over the rounds.

Prints samples/s ratios (job ÷ hand-written; goal ≥ 0.95) and the submit → first step latency
of small jobs (goal ≤ 2 s median). One run takes about 80 s on 2 idle CPUs.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench._server import server_process
from bench.load import OtherLoad

FEATURES = 784
CLASSES = 10
BATCH = 128
LOG_EVERY = 10
ROUNDS = 3
WARMUP_STEPS = 20
LR = 0.05
OPTIMIZER = {"name": "sgd", "lr": LR}
LATENCY_JOBS = 5
LATENCY_ROWS = 2_000
MLP = {"arch": "mlp", "input_shape": [FEATURES], "hidden": [512, 512], "num_outputs": CLASSES}
CNN = {
    "arch": "cnn",
    "input_shape": [1, 28, 28],
    "conv": [{"channels": 32}, {"channels": 64}],
    "num_outputs": CLASSES,
}


@dataclass(frozen=True)
class Case:
    name: str
    spec: dict[str, Any]
    rows: int
    epochs: int

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.rows // BATCH)

    def batch_rows(self, step: int) -> int:
        """Rows in global step ``step`` (1-based); an epoch's last batch may be short."""
        in_epoch = (step - 1) % self.steps_per_epoch
        return min(BATCH, self.rows - in_epoch * BATCH)

    def rows_between(self, after: int, upto: int) -> int:
        """Rows trained in steps ``after + 1`` … ``upto``."""
        return sum(self.batch_rows(step) for step in range(after + 1, upto + 1))

    @property
    def window(self) -> tuple[int, int]:
        """The steady-state steps timed on both sides: after ``first``, up to ``last``."""
        total = self.epochs * self.steps_per_epoch
        first = -(-WARMUP_STEPS // LOG_EVERY) * LOG_EVERY
        return first, total // LOG_EVERY * LOG_EVERY


CASES = (
    # Two epochs, so that the window holds an epoch's end (its event and checkpoint) too.
    Case("mlp 784-512-512-10", MLP, 60_000, 2),
    Case("cnn conv32-conv64", CNN, 6_400, 1),
)


def synthetic_mnist(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features in [0, 1] and labels that a model can learn: argmax of a fixed projection."""
    rng = np.random.default_rng(seed)
    x = rng.random((rows, FEATURES), dtype=np.float32)
    projection = np.random.default_rng(seed + 1).standard_normal((FEATURES, CLASSES))
    y = (x @ projection.astype(np.float32)).argmax(axis=1).astype(np.int64)
    return x, y


def job_threads() -> int:
    from modelyard.config import Settings
    from modelyard.jobs.context import worker_threads

    return worker_threads(Settings(executor_slots=1))


def push_dataset(api: httpx.Client, name: str, x: np.ndarray, y: np.ndarray, tmp: Path) -> None:
    path = tmp / f"{name}.npz"
    np.savez(path, x=x, y=y)
    reply = api.post(
        "/api/v1/datasets",
        params={"name": name, "format": "npz", "label": "y"},
        content=path.read_bytes(),
    )
    reply.raise_for_status()


def train_body(case: Case, dataset: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "train",
        "model": {"spec": case.spec},
        "dataset": dataset,
        "label": "y",
        "output_model": dataset + "-" + case.spec["arch"],
        "optimizer": OPTIMIZER,
        "epochs": case.epochs,
        "batch_size": BATCH,
        "seed": 0,
        "device": "cpu",
        "log_every_steps": LOG_EVERY,
        **extra,
    }


def wait_done(api: httpx.Client, job_id: str, poll_s: float) -> dict[str, Any]:
    while True:
        job: dict[str, Any] = api.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            if job["status"] != "succeeded":
                raise SystemExit(f"job {job_id} {job['status']}: {job['error']}")
            return job
        time.sleep(poll_s)


def job_events(api: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while True:
        page = api.get(f"/api/v1/jobs/{job_id}/events", params={"after": len(events)}).json()
        if not page["items"]:
            return events
        events.extend(page["items"])


def timestamp(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["at"]).timestamp()


@dataclass
class JobRun:
    samples_per_s: float
    final_loss: float
    wall_s: float


def run_job(api: httpx.Client, case: Case, dataset: str) -> JobRun:
    """Train through the server; samples/s from the step events' timestamps in the window."""
    t0 = time.perf_counter()
    reply = api.post("/api/v1/jobs", json=train_body(case, dataset))
    reply.raise_for_status()
    job_id = reply.json()["id"]
    done = wait_done(api, job_id, poll_s=0.5)
    wall_s = time.perf_counter() - t0
    steps = {e["data"]["step"]: e for e in job_events(api, job_id) if e["type"] == "step"}
    first, last = case.window
    seconds = timestamp(steps[last]) - timestamp(steps[first])
    return JobRun(
        case.rows_between(first, last) / seconds,
        done["result"]["metrics"]["train"]["loss"],
        wall_s,
    )


def run_hand_written(case: Case, x: np.ndarray, y: np.ndarray) -> float:
    """A plain PyTorch loop; samples/s over the same steps as the job's window."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    from modelyard.nn import build_model

    torch.manual_seed(0)
    model = build_model(case.spec)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    inputs = torch.from_numpy(x[: case.rows].copy()).reshape(case.rows, *case.spec["input_shape"])
    labels = torch.from_numpy(y[: case.rows].copy())
    ends = [time.perf_counter()]
    for _epoch in range(case.epochs):
        order = torch.randperm(case.rows)
        for start in range(0, case.rows, BATCH):
            index = order[start : start + BATCH]
            loss = F.cross_entropy(model(inputs[index]), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            ends.append(time.perf_counter())
    first, last = case.window
    return case.rows_between(first, last) / (ends[last] - ends[first])


def submit_latency(api: httpx.Client, dataset: str) -> list[float]:
    """Seconds from just before each POST to the ``at`` of the job's first step event."""
    case = Case("latency", MLP, LATENCY_ROWS, 1)
    latencies = []
    for index in range(LATENCY_JOBS):
        body = train_body(case, dataset, log_every_steps=1, output_model=f"latency-{index}")
        sent = time.time()
        reply = api.post("/api/v1/jobs", json=body)
        reply.raise_for_status()
        job_id = reply.json()["id"]
        wait_done(api, job_id, poll_s=0.1)
        first = next(e for e in job_events(api, job_id) if e["type"] == "step")
        latencies.append(timestamp(first) - sent)
    return latencies


@dataclass
class Comparison:
    """One case's rounds: hand-written samples/s and job runs, paired by round."""

    case: Case
    hands: list[float]
    jobs: list[JobRun]

    @property
    def ratios(self) -> list[float]:
        return [job.samples_per_s / hand for job, hand in zip(self.jobs, self.hands, strict=True)]


def compare(
    api: httpx.Client, case: Case, dataset: str, x: np.ndarray, y: np.ndarray, other: OtherLoad
) -> Comparison:
    """``ROUNDS`` rounds of one job run and one hand-written run, the order flipping each round."""
    result = Comparison(case, [], [])
    for round_ in range(ROUNDS):
        # Alternate the order so that a burst of other work on the host hits both sides alike.
        sides = ("hand", "job") if round_ % 2 else ("job", "hand")
        for side in sides:
            if side == "hand":
                result.hands.append(other.measure(lambda: run_hand_written(case, x, y)))
            else:
                result.jobs.append(other.measure(lambda: run_job(api, case, dataset)))
    return result


def main() -> None:
    import torch

    began = time.perf_counter()
    threads = job_threads()
    torch.set_num_threads(threads)
    x, y = synthetic_mnist(max(case.rows for case in CASES))
    results: list[Comparison] = []
    other = OtherLoad()
    with (
        tempfile.TemporaryDirectory(prefix="modelyard-training-") as tmp,
        server_process(MODELYARD_EXECUTOR_SLOTS="1") as srv,
        httpx.Client(
            base_url=srv.url, headers={"Authorization": f"Bearer {srv.key}"}, timeout=600
        ) as api,
    ):
        push_dataset(api, "latency", x[:LATENCY_ROWS], y[:LATENCY_ROWS], Path(tmp))
        for index, case in enumerate(CASES):
            push_dataset(api, f"synthetic-{index}", x[: case.rows], y[: case.rows], Path(tmp))
        latencies = submit_latency(api, "latency")
        for index, case in enumerate(CASES):
            results.append(compare(api, case, f"synthetic-{index}", x, y, other))

    median = statistics.median
    print(
        f"sgd lr {LR}, {threads} torch threads on both sides ({os.cpu_count()} CPUs); job "
        f"samples/s from its step-event timestamps (every {LOG_EVERY} steps) after "
        f"{WARMUP_STEPS} warm-up steps, hand-written over the same steps; {ROUNDS} rounds, "
        "the order of the two sides flipping each round; medians"
    )
    print(
        f"{'model':<20}{'samples':>8}{'epochs':>7}{'batch':>6}{'timed steps':>13}"
        f"{'hand /s':>9}{'job /s':>9}{'ratio':>7}{'ratio range':>13}{'job wall s':>12}"
        f"{'job loss':>10}"
    )
    for result in results:
        case = result.case
        first, last = case.window
        ratios = result.ratios
        print(
            f"{case.name:<20}{case.rows:>8}{case.epochs:>7}{BATCH:>6}{f'{first + 1}-{last}':>13}"
            f"{median(result.hands):>9.0f}"
            f"{median(job.samples_per_s for job in result.jobs):>9.0f}"
            f"{median(ratios):>7.2f}{f'{min(ratios):.2f}-{max(ratios):.2f}':>13}"
            f"{median(job.wall_s for job in result.jobs):>12.1f}"
            f"{median(job.final_loss for job in result.jobs):>10.3f}"
        )
    print(
        "ratio = median over the rounds of job ÷ hand-written samples/s (goal ≥ 0.95); job "
        "wall = submit → succeeded; job loss = final training loss"
    )
    for result in results:
        each = " ".join(f"{ratio:.2f}" for ratio in result.ratios)
        print(f"{result.case.name} ratio per round: {each}")
    print(
        f"other processes on the host kept {statistics.mean(other.runs):.2f} CPUs busy on "
        f"average during the timed runs (at most {max(other.runs):.2f} in one); the ratios "
        "are only meaningful near 0"
    )
    each = " ".join(f"{s:.2f}" for s in latencies)
    print(
        f"submit → first step ({LATENCY_JOBS} jobs one after another, mlp on {LATENCY_ROWS} "
        f"rows): median {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s "
        f"(goal ≤ 2 s median); each: {each}"
    )
    print(f"benchmark time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
