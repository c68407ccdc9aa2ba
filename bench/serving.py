"""Online inference: Modelyard's server against the raw forward, a bare endpoint and LitServe.

For an MLP 784-512-512-10 (so cheap that HTTP dominates) and an MNIST-style CNN (compute
dominates), all measured in one run on the same machine:

* the raw limit: the catalog model in this process under ``torch.inference_mode`` at batch
  1/8/32/64, with the server's torch thread count; the fastest forward is the reference
  (the median is printed too: on a busy machine it mostly measures descheduled threads);
* Modelyard (``python -m modelyard serve``, one deployment per model with dynamic batching)
  at concurrency 1, 16 and 64, one sample per request in the binary tensor extension of the
  Open Inference Protocol, and once in JSON tensors for reference;
* a bare FastAPI endpoint on uvicorn, the stack Modelyard runs on: the transport ceiling;
* LitServe with its own batching (same batch size and delay) on the same weights, installed
  into ``.venv-peers`` on first use; it takes JSON, its native request format.

Requests come from ``bench.loadgen`` in this process, so client and server share the
machine's cores. Prints req/s, p50 and p99 per system and concurrency, ratios to the raw
limit at batch 32 and to the best peer, and whether each goal is reached.

    python -m bench serving
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench._server import free_port, server_process
from bench.loadgen import LoadResult, run_load

ROOT = Path(__file__).resolve().parent.parent
PEERS_VENV = ROOT / ".venv-peers"
PEER_TORCH = "torch==2.13.0"
CONCURRENCY = (1, 16, 64)
RAW_BATCHES = (1, 8, 32, 64)
LIMIT_BATCH = 32
RAW_SECONDS = 2.0
RAW_ROUNDS = 5
JSON_CONCURRENCY = 64


@dataclass(frozen=True)
class Case:
    """One model, how every server batches it, and how many requests each cell sends."""

    name: str
    label: str
    spec: dict[str, Any]
    max_batch_size: int
    max_batch_delay_ms: float
    peer_batch_timeout_ms: float
    requests: int

    @property
    def sample_shape(self) -> list[int]:
        return [1, *self.spec["input_shape"]]


CASES = (
    Case(
        "mlp",
        "mlp 784-512-512-10",
        {"arch": "mlp", "input_shape": [784], "hidden": [512, 512], "num_outputs": 10},
        max_batch_size=64,
        max_batch_delay_ms=0.0,
        peer_batch_timeout_ms=2.0,
        requests=3000,
    ),
    Case(
        "cnn",
        "cnn 1x28x28 c32-c64",
        {"arch": "cnn", "input_shape": [1, 28, 28], "num_outputs": 10},
        max_batch_size=64,
        max_batch_delay_ms=0.0,
        peer_batch_timeout_ms=2.0,
        requests=1500,
    ),
)


@dataclass
class Row:
    system: str
    concurrency: int | None
    result: LoadResult | None = None
    note: str = ""


class PeerUnavailable(Exception):
    """A peer could not be installed or started; the message says why."""


# -- the raw limit --------------------------------------------------------------------------


def raw_forwards(model: Any, shape: list[int]) -> tuple[dict[int, float], dict[int, float]]:
    """Median and fastest seconds per forward of ``model`` at each of ``RAW_BATCHES``.

    The batch sizes take turns for ``RAW_ROUNDS`` rounds, so that a busy spell on the
    machine does not land on one batch size only.
    """
    import torch

    inputs = {b: torch.rand([b, *shape[1:]]) for b in RAW_BATCHES}
    times: dict[int, list[float]] = {b: [] for b in RAW_BATCHES}
    with torch.inference_mode():
        for x in inputs.values():
            for _ in range(3):
                model(x)
        for _ in range(RAW_ROUNDS):
            for batch, x in inputs.items():
                deadline = time.perf_counter() + RAW_SECONDS / RAW_ROUNDS
                count = 0
                while time.perf_counter() < deadline or count < 5:
                    t0 = time.perf_counter()
                    model(x)
                    times[batch].append(time.perf_counter() - t0)
                    count += 1
    median = {b: float(np.median(t)) for b, t in times.items()}
    fastest = {b: min(t) for b, t in times.items()}
    return median, fastest


# -- request bodies ----------------------------------------------------------------------------


def oip_binary(
    input_name: str, output_name: str, sample: np.ndarray
) -> tuple[bytes, dict[str, str]]:
    """An OIP request with ``sample`` as binary tensor data and the output asked in binary."""
    raw = sample.astype("<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": input_name,
                    "shape": list(sample.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": output_name, "parameters": {"binary_data": True}}],
        }
    ).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return header + raw, headers


def oip_json(input_name: str, sample: np.ndarray) -> tuple[bytes, dict[str, str]]:
    body = {
        "inputs": [
            {
                "name": input_name,
                "shape": list(sample.shape),
                "datatype": "FP32",
                "data": sample.reshape(-1).tolist(),
            }
        ]
    }
    return json.dumps(body).encode(), {"Content-Type": "application/json"}


# -- processes --------------------------------------------------------------------------------


@contextlib.contextmanager
def background(command: list[str], ready_url: str, timeout: float = 120) -> Iterator[None]:
    """Run ``command`` in its own process group until ``ready_url`` answers 200."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(ready_url, timeout=1).status_code == 200:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read().decode(errors="replace").strip().splitlines()[-1:]
                    raise PeerUnavailable(f"did not start: {' '.join(tail)[:120]}")
                time.sleep(0.2)
            yield
        finally:
            # The peers start worker processes of their own; end the whole group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def peers_python() -> Path:
    """The peers' interpreter, creating ``.venv-peers`` (torch first, pinned) on first use."""
    python = PEERS_VENV / "bin" / "python"
    check = [str(python), "-c", "import litserve, safetensors, torch"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print("installing LitServe into .venv-peers (once) ...", flush=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    steps = [
        ["python3", "-m", "venv", str(PEERS_VENV)],
        [*pip, PEER_TORCH],
        [*pip, "-c", str(ROOT / "constraints.txt"), "litserve", "safetensors", "numpy"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise PeerUnavailable(f"install failed: {' '.join(last)[:120]}")
    if subprocess.run(check, capture_output=True).returncode != 0:
        raise PeerUnavailable("litserve does not import in .venv-peers")
    return python


# -- measuring ----------------------------------------------------------------------------------


def measure(
    url: str, body: bytes, headers: dict[str, str], requests: int, concurrency: int
) -> LoadResult:
    """Warm the connections and the server up, then time ``requests`` requests."""
    run_load(url, body, headers, requests=max(100, 2 * concurrency), concurrency=concurrency)
    return run_load(url, body, headers, requests=requests, concurrency=concurrency)


def load_cells(
    system: str, url: str, body: bytes, headers: dict[str, str], case: Case
) -> list[Row]:
    rows = []
    for concurrency in CONCURRENCY:
        requests = case.requests if concurrency > 1 else case.requests // 2
        result = measure(url, body, headers, requests, concurrency)
        rows.append(Row(system, concurrency, result))
    return rows


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def verdict(ok: bool) -> str:
    return "reached" if ok else "not reached"


def outputs_match(expected: np.ndarray, got: list[float] | None) -> str:
    if got is None:
        return "n/a"
    same = np.allclose(np.asarray(got, dtype=np.float32).reshape(-1), expected, atol=1e-4)
    return "yes" if same else "NO"


@dataclass
class CaseResult:
    case: Case
    runtime: str
    forward_s: dict[int, float]
    fastest_s: dict[int, float]
    rows: list[Row]
    checks: dict[str, str]


def run_case(case: Case, srv: Any, api: httpx.Client, tmp: Path, threads: int) -> CaseResult:
    import torch

    from modelyard.nn import build_model, save_weights

    torch.manual_seed(0)
    model = build_model(case.spec).eval()
    forward_s, fastest_s = raw_forwards(model, case.sample_shape)

    weights = tmp / f"{case.name}.safetensors"
    save_weights(model, weights, spec=case.spec)
    api.post("/api/v1/models", json={"name": case.name}).raise_for_status()
    api.post(
        f"/api/v1/models/{case.name}/versions",
        params={"filename": weights.name},
        content=weights.read_bytes(),
    ).raise_for_status()
    reply = api.post(
        "/api/v1/deployments",
        json={
            "name": case.name,
            "model": case.name,
            "max_batch_size": case.max_batch_size,
            "max_batch_delay_ms": case.max_batch_delay_ms,
        },
    )
    reply.raise_for_status()
    version = reply.json()["versions"][0]
    input_name, output_name = version["inputs"][0]["name"], version["outputs"][0]["name"]
    runtime = str(version.get("runtime", "?"))

    rng = np.random.default_rng(0)
    sample = rng.random(case.sample_shape, dtype=np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(sample)).numpy().reshape(-1)
    url = f"{srv.url}/v2/models/{case.name}/infer"
    auth = {"Authorization": f"Bearer {srv.key}"}
    body, headers = oip_binary(input_name, output_name, sample)
    rows = load_cells("modelyard (OIP binary)", url, body, {**auth, **headers}, case)
    body, headers = oip_json(input_name, sample)
    json_result = measure(url, body, {**auth, **headers}, case.requests, JSON_CONCURRENCY)
    rows.append(Row("modelyard (OIP JSON)", JSON_CONCURRENCY, json_result))
    ours_json = json.loads(json_result.first_body)["outputs"][0]["data"]
    checks = {"modelyard": outputs_match(expected, ours_json)}

    peer = f"litserve (batch {case.max_batch_size}, {case.peer_batch_timeout_ms:g} ms, JSON)"
    try:
        python = peers_python()
        port = free_port()
        command = [
            str(python),
            str(ROOT / "bench" / "peers" / "litserve_peer.py"),
            str(port),
            str(weights),
            f"--max-batch-size={case.max_batch_size}",
            f"--batch-timeout-ms={case.peer_batch_timeout_ms}",
            f"--threads={threads}",
        ]
        with background(command, f"http://127.0.0.1:{port}/health"):
            body = json.dumps({"input": sample.reshape(-1).tolist()}).encode()
            peer_url = f"http://127.0.0.1:{port}/predict"
            peer_rows = load_cells(peer, peer_url, body, {"Content-Type": "application/json"}, case)
        rows += peer_rows
        checks["litserve"] = outputs_match(
            expected,
            json.loads(peer_rows[-1].result.first_body)["output"],  # type: ignore[union-attr]
        )
    except PeerUnavailable as exc:
        rows.append(Row("litserve", None, note=f"unavailable ({exc})"))
    return CaseResult(case, runtime, forward_s, fastest_s, rows, checks)


def run_echo(body_size: int) -> list[Row]:
    port = free_port()
    command = [sys.executable, "-m", "bench.peers.echo", str(port)]
    body = b"\0" * body_size
    headers = {"Content-Type": "application/octet-stream"}
    with background(command, f"http://127.0.0.1:{port}/ready", timeout=60):
        return [
            Row(
                "echo (FastAPI on uvicorn)",
                c,
                measure(f"http://127.0.0.1:{port}/echo", body, headers, 3000, c),
            )
            for c in CONCURRENCY
        ]


def by_concurrency(rows: list[Row], prefix: str) -> dict[int, LoadResult]:
    return {
        r.concurrency: r.result
        for r in rows
        if r.system.startswith(prefix) and r.concurrency is not None and r.result is not None
    }


def print_case(res: CaseResult, echo: dict[int, LoadResult], threads: int) -> list[str]:
    # The fastest forward is the reference: on a shared machine the median also measures
    # the wait for a descheduled torch thread, which would flatter the server's ratios.
    case, fwd = res.case, res.fastest_s
    limit = LIMIT_BATCH / fwd[LIMIT_BATCH]
    print(
        f"\n{case.label}: deployment runtime {res.runtime}, max_batch_size="
        f"{case.max_batch_size}, max_batch_delay_ms={case.max_batch_delay_ms:g}; "
        f"LitServe max_batch_size={case.max_batch_size}, "
        f"batch_timeout {case.peer_batch_timeout_ms:g} ms"
    )
    print(f"raw forward in this process ({threads} torch threads, torch.inference_mode):")
    print(f"{'batch':>7}{'ms fastest':>12}{'samples/s':>11}{'ms median':>11}{'samples/s':>11}")
    for batch, seconds in fwd.items():
        median = res.forward_s[batch]
        print(
            f"{batch:>7}{ms(seconds):>12}{batch / seconds:>11,.0f}"
            f"{ms(median):>11}{batch / median:>11,.0f}"
        )
    print(
        f"raw limit: batch {LIMIT_BATCH}, {limit:,.0f} samples/s from the fastest forward "
        "(the reference for the ratios and goals below)"
    )
    peers = [r for r in res.rows if r.system.startswith("litserve") and r.result is not None]
    best_peer: dict[int, float] = {}
    for r in peers:
        assert r.concurrency is not None and r.result is not None
        best_peer[r.concurrency] = max(best_peer.get(r.concurrency, 0.0), r.result.req_per_s)
    print(
        f"{'system':<44}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>8}"
        f"{'vs raw@32':>10}{'vs peer':>9}{'vs echo':>9}"
    )
    for row in res.rows:
        if row.result is None:
            print(f"{row.system:<44}{'':>5}  {row.note}")
            continue
        r, c = row.result, row.concurrency
        assert c is not None
        peer = f"{r.req_per_s / best_peer[c]:.2f}" if c in best_peer else "-"
        ceiling = f"{r.req_per_s / echo[c].req_per_s:.2f}" if c in echo else "-"
        print(
            f"{row.system:<44}{c:>5}{r.req_per_s:>9,.0f}{ms(r.p50):>9}{ms(r.p99):>9}"
            f"{len(r.latencies) - r.ok:>8}{r.req_per_s / limit:>10.2f}{peer:>9}{ceiling:>9}"
        )
    checks = ", ".join(f"{k} {v}" for k, v in res.checks.items())
    print(f"outputs equal to the in-process forward: {checks}")

    ours = by_concurrency(res.rows, "modelyard (OIP binary)")
    top = max(CONCURRENCY)
    goals = []
    if case.name == "cnn":
        ratio = ours[top].req_per_s / limit
        goals.append(
            f"{case.name}: {ours[top].req_per_s:,.0f} req/s at concurrency {top} = "
            f"{ratio:.2f} x the raw limit at batch {LIMIT_BATCH} (goal >= 0.7): "
            f"{verdict(ratio >= 0.7)}"
        )
    if case.name == "mlp":
        if top in best_peer:
            ratio = ours[top].req_per_s / best_peer[top]
            goals.append(
                f"{case.name}: {ours[top].req_per_s:,.0f} req/s at concurrency {top} = "
                f"{ratio:.2f} x the best peer's {best_peer[top]:,.0f} (goal >= 2): "
                f"{verdict(ratio >= 2)}"
            )
        else:
            goals.append(f"{case.name}: vs the best peer: not measured (no peer available)")
    bound = 3 * fwd[LIMIT_BATCH] + 0.025
    goals.append(
        f"{case.name}: p99 at concurrency {top} {ms(ours[top].p99)} ms (goal <= 3 x "
        f"{ms(fwd[LIMIT_BATCH])} + 25 = {ms(bound)} ms): {verdict(ours[top].p99 <= bound)}"
    )
    added = ours[1].p50 - fwd[1]
    goals.append(
        f"{case.name}: latency added at concurrency 1: p50 {ms(ours[1].p50)} - forward "
        f"{ms(fwd[1])} = {ms(added)} ms (goal <= 1.5 ms): {verdict(added <= 0.0015)}"
    )
    return goals


def main() -> None:
    import torch

    started = time.perf_counter()
    threads = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"one machine, {cores} cores shared by the load generator and the server under test "
        f"(load average before the run: {load}); torch threads {threads} everywhere"
    )
    if os.getloadavg()[0] > cores:
        print(
            "warning: other work is running on this machine; every number below competes "
            "with it, and torch's thread pools suffer most (compare fastest and median)"
        )
    print(
        "req/s and latencies from bench.loadgen (keep-alive HTTP/1.1, one connection per "
        "concurrent request, one sample per request); ratios are to numbers of this run"
    )
    mlp = CASES[0]
    sample = np.zeros(mlp.sample_shape, dtype=np.float32)
    echo_size = len(oip_binary("input", "output", sample)[0])
    try:
        echo_rows = run_echo(echo_size)
    except PeerUnavailable as exc:
        echo_rows = [Row("echo (FastAPI on uvicorn)", None, note=f"unavailable ({exc})")]
    echo = by_concurrency(echo_rows, "echo")
    print(f"\ntransport ceiling: POST of {echo_size} bytes answered with 64 bytes")
    print(f"{'system':<44}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for row in echo_rows:
        if row.result is None:
            print(f"{row.system:<44}{'':>5}  {row.note}")
            continue
        r = row.result
        print(
            f"{row.system:<44}{row.concurrency:>5}{r.req_per_s:>9,.0f}{ms(r.p50):>9}{ms(r.p99):>9}"
        )

    goals: list[str] = []
    with tempfile.TemporaryDirectory(prefix="modelyard-serving-") as tmp:
        with server_process() as srv:
            auth = {"Authorization": f"Bearer {srv.key}"}
            with httpx.Client(base_url=srv.url, headers=auth, timeout=300) as api:
                results = [run_case(case, srv, api, Path(tmp), threads) for case in CASES]
        for res in results:
            goals += print_case(res, echo, threads)
    print("\ngoals:")
    for line in goals:
        print(f"  {line}")
    print(f"run time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
