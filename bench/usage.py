"""Limits and metering on the hot path: the same server with them on and off, in one run.

Modelyard (``python -m modelyard serve``) serves the MLP of ``bench serving`` (784-512-512-10,
so cheap that the request path dominates) three ways, measured in interleaved rounds at
concurrency 1, 16 and 64 with one sample per request in binary Open Inference Protocol
tensors:

* **off**: ``MODELYARD_METERING=false`` (no limits, budgets or metering);
* **on, memory**: the bench key and its project limited (a requests-per-minute limit far
  above what the run sends, so every request is counted and none refused) and every request
  metered, counters in the server's memory;
* **on, Redis**: the same with the counters in Redis (``MODELYARD_REDIS_URL``), when Redis
  answers on 127.0.0.1:6379.

The goal: throughput at concurrency 64 with limits and metering on stays at or above 0.95×
the same server with them off.

    python -m bench usage
    python -m bench.usage --rounds 5
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench._server import server_process
from bench.serving import CASES, CONCURRENCY, ROUNDS, modelyard_systems, ms, run_rounds

REDIS_URL = "redis://127.0.0.1:6379/0"
GOAL = 0.95
HIGH = 10**9


def _redis_up() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except Exception:
        return False


def limit_everything(srv: object) -> None:
    """Give the bench key and its project a requests limit no run reaches."""
    url, key = srv.url, srv.key  # type: ignore[attr-defined]
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=auth, timeout=60) as api:
        me = api.get("/api/v1/whoami").json()
        body = {"requests_per_minute": HIGH, "tokens_per_minute": HIGH}
        api.put(f"/api/v1/limits/keys/{me['key']['id']}", json=body).raise_for_status()
        projects = api.get("/api/v1/projects").json()["items"]
        for project in projects:
            api.put(f"/api/v1/limits/projects/{project['name']}", json=body).raise_for_status()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Limits and metering on vs off")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument(
        "--quick",
        action="store_true",
        default=bool(os.environ.get("BENCH_QUICK")),
        help="half the requests (also BENCH_QUICK=1)",
    )
    args = parser.parse_args(argv if argv is not None else [])
    import numpy as np
    import torch

    from modelyard.nn import build_model, save_weights

    case = CASES["mlp"]
    scale = 0.5 if args.quick else 1.0
    started = time.perf_counter()
    print(
        f"{len(os.sched_getaffinity(0))} cores shared by the load generator and the servers; "
        f"{case.label}, {args.rounds} interleaved rounds, medians"
    )
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="usage-") as tmp:
        torch.manual_seed(0)
        model = build_model(case.spec).eval()
        weights = Path(tmp) / "mlp.safetensors"
        save_weights(model, weights, spec=case.spec)
        sample = case.inputs(1)
        with torch.inference_mode():
            expected = model(torch.from_numpy(sample)).numpy().reshape(-1)
        servers = [
            ("off", stack.enter_context(server_process(MODELYARD_METERING="false"))),
            ("on, memory", stack.enter_context(server_process())),
        ]
        if _redis_up():
            prefix = f"bench-{uuid.uuid4().hex[:8]}"
            redis = server_process(MODELYARD_REDIS_URL=REDIS_URL, MODELYARD_REDIS_PREFIX=prefix)
            servers.append(("on, Redis", stack.enter_context(redis)))
        systems = []
        for label, srv in servers:
            found, _ = modelyard_systems(f"limits+metering {label}", srv, case, weights, sample)
            systems.append(found[0])  # binary tensors
            if label != "off":
                limit_everything(srv)
        cells = run_rounds(systems, case, args.rounds, np.asarray(expected), scale)

    print(f"\n{'system':44} {'conc':>4} {'req/s':>8} {'p50':>8} {'p99':>8} {'vs off':>7}")
    off = systems[0].name
    goals = []
    for concurrency in CONCURRENCY:
        base = cells[(off, concurrency)].median(lambda r: r.req_per_s)
        for system in systems:
            cell = cells[(system.name, concurrency)]
            rate = cell.median(lambda r: r.req_per_s)
            p50 = cell.median(lambda r: r.p50)
            p99 = cell.median(lambda r: r.p99)
            ratio = rate / base if base else float("nan")
            print(
                f"{system.name:44} {concurrency:>4} {rate:>8.0f} {ms(p50):>8} {ms(p99):>8} "
                f"{ratio:>6.2f}x"
            )
            if concurrency == 64 and system.name != off:
                verdict = "ok" if ratio >= GOAL else "BELOW GOAL"
                goals.append(f"{system.name} at 64: {ratio:.2f}x of off (goal >= {GOAL}) {verdict}")
            if cell.failed:
                print(f"  {cell.failed} failed replies")
    print("\ngoals:")
    for line in goals:
        print(f"  {line}")
    print(f"run time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
