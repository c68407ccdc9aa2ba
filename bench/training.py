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

With ``--baseline SRC`` (the ``src`` folder of another checkout, e.g. from
``git archive <commit> src | tar -x -C /tmp/base``) a second server runs that code, and every
round times its job too, in the same rotation: before and after a change, measured in one run::

    python -m bench.training --cases mlp --baseline /tmp/base/src
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench._server import server_process
from bench.load import OtherLoad
from modelyard.api.server import bound_openmp_waits

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
CASE_KEYS = {"mlp": CASES[0], "cnn": CASES[1]}


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
    """One case's rounds: hand-written samples/s and each server's job runs, paired by round."""

    case: Case
    hands: list[float]
    jobs: dict[str, list[JobRun]] = field(default_factory=dict)

    def ratios(self, server: str) -> list[float]:
        runs = self.jobs[server]
        return [job.samples_per_s / hand for job, hand in zip(runs, self.hands, strict=True)]


def compare(
    apis: dict[str, httpx.Client],
    case: Case,
    dataset: str,
    x: np.ndarray,
    y: np.ndarray,
    other: OtherLoad,
    rounds: int,
) -> Comparison:
    """``rounds`` rounds of one hand-written run and one job run on each server, the order
    rotating each round."""
    result = Comparison(case, [], {name: [] for name in apis})
    sides = ["hand", *apis]
    for round_ in range(rounds):
        # Rotate the order so that a burst of other work on the host hits every side alike.
        shift = round_ % len(sides)
        for side in sides[shift:] + sides[:shift]:
            if side == "hand":
                result.hands.append(other.measure(lambda: run_hand_written(case, x, y)))
            else:
                job = functools.partial(run_job, apis[side], case, dataset)
                result.jobs[side].append(other.measure(job))
    return result


@contextlib.contextmanager
def bench_server(src: str | None) -> Iterator[httpx.Client]:
    """A client of a fresh server, running the code under ``src`` when given."""
    env = {"MODELYARD_EXECUTOR_SLOTS": "1"}
    if src is not None:
        env["PYTHONPATH"] = src
    with (
        server_process(**env) as srv,
        httpx.Client(
            base_url=srv.url, headers={"Authorization": f"Bearer {srv.key}"}, timeout=600
        ) as api,
    ):
        yield api


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.training",
        description="Samples/s of a train job vs a hand-written PyTorch loop on the same model, "
        "data, batch and threads (goal: ratio >= 0.95), and submit -> first step latency.",
    )
    parser.add_argument(
        "--cases",
        default="mlp,cnn",
        help="comma-separated cases: mlp (784-512-512-10, 60,000 rows, 2 epochs), cnn "
        "(conv32-conv64, 6,400 rows, 1 epoch); default: both",
    )
    parser.add_argument(
        "--rounds", type=int, default=ROUNDS, help=f"rounds per case (default {ROUNDS})"
    )
    parser.add_argument(
        "--baseline",
        metavar="SRC",
        help="the src folder of another checkout: its server's jobs are timed in the same "
        "rounds (before/after a change in one run)",
    )
    parser.add_argument(
        "--no-latency", action="store_true", help="skip the submit -> first step measurement"
    )
    args = parser.parse_args(argv)
    unknown = [c for c in args.cases.split(",") if c not in CASE_KEYS]
    if unknown:
        parser.error(f"--cases: unknown case {unknown[0]!r}; use mlp, cnn or both")
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    cases = [CASE_KEYS[c] for c in args.cases.split(",")]
    # The server's processes bound how long torch's OpenMP threads spin between operations
    # (modelyard.api.server); the hand-written loop, and a --baseline server from before that
    # setting, get the same, before torch is first loaded here and in every server.
    bound_openmp_waits()
    import torch

    began = time.perf_counter()
    threads = job_threads()
    torch.set_num_threads(threads)
    x, y = synthetic_mnist(max(case.rows for case in cases))
    results: list[Comparison] = []
    other = OtherLoad()
    servers: dict[str, str | None] = {"job": None}
    if args.baseline is not None:
        servers["baseline"] = args.baseline
    latencies: list[float] = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="modelyard-training-")))
        apis = {name: stack.enter_context(bench_server(src)) for name, src in servers.items()}
        for api in apis.values():
            push_dataset(api, "latency", x[:LATENCY_ROWS], y[:LATENCY_ROWS], tmp)
            for index, case in enumerate(cases):
                push_dataset(api, f"synthetic-{index}", x[: case.rows], y[: case.rows], tmp)
        if not args.no_latency:
            latencies = submit_latency(apis["job"], "latency")
        for index, case in enumerate(cases):
            results.append(compare(apis, case, f"synthetic-{index}", x, y, other, args.rounds))
    report(results, threads, args.rounds, latencies, other)
    print(f"benchmark time {time.perf_counter() - began:.0f} s")


def report(
    results: list[Comparison],
    threads: int,
    rounds: int,
    latencies: list[float],
    other: OtherLoad,
) -> None:
    median = statistics.median
    print(
        f"sgd lr {LR}, {threads} torch threads on both sides ({os.cpu_count()} CPUs); job "
        f"samples/s from its step-event timestamps (every {LOG_EVERY} steps) after "
        f"{WARMUP_STEPS} warm-up steps, hand-written over the same steps; {rounds} rounds, "
        "the order of the sides rotating each round; medians; OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY')} GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')} "
        "everywhere"
    )
    print(
        f"{'model':<20}{'server':>9}{'samples':>8}{'epochs':>7}{'batch':>6}{'timed steps':>13}"
        f"{'hand /s':>9}{'job /s':>9}{'ratio':>7}{'ratio range':>13}{'job wall s':>12}"
        f"{'job loss':>10}"
    )
    for result in results:
        case = result.case
        first, last = case.window
        for server, runs in result.jobs.items():
            ratios = result.ratios(server)
            print(
                f"{case.name:<20}{server:>9}{case.rows:>8}{case.epochs:>7}{BATCH:>6}"
                f"{f'{first + 1}-{last}':>13}{median(result.hands):>9.0f}"
                f"{median(job.samples_per_s for job in runs):>9.0f}"
                f"{median(ratios):>7.2f}{f'{min(ratios):.2f}-{max(ratios):.2f}':>13}"
                f"{median(job.wall_s for job in runs):>12.1f}"
                f"{median(job.final_loss for job in runs):>10.3f}"
            )
    print(
        "ratio = median over the rounds of job ÷ hand-written samples/s (goal ≥ 0.95); job "
        "wall = submit → succeeded; job loss = final training loss; server job = this "
        "checkout, baseline = --baseline"
    )
    for result in results:
        for server in result.jobs:
            each = " ".join(f"{ratio:.2f}" for ratio in result.ratios(server))
            print(f"{result.case.name} {server} ratio per round: {each}")
    print(
        f"other processes on the host kept {statistics.mean(other.runs):.2f} CPUs busy on "
        f"average during the timed runs (at most {max(other.runs):.2f} in one); the ratios "
        "are only meaningful near 0"
    )
    if latencies:
        each = " ".join(f"{s:.2f}" for s in latencies)
        print(
            f"submit → first step ({LATENCY_JOBS} jobs one after another, mlp on "
            f"{LATENCY_ROWS} rows): median {statistics.median(latencies):.2f} s, max "
            f"{max(latencies):.2f} s (goal ≤ 2 s median); each: {each}"
        )


if __name__ == "__main__":
    main()
