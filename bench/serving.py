"""Online inference: Modelyard's server against the raw forward, a bare endpoint and LitServe.

For an MLP 784-512-512-10 (so cheap that HTTP dominates) and an MNIST-style CNN (compute
dominates), all measured in one run on the same machine:

* the raw limit: the catalog model in this process under ``torch.inference_mode`` at batch
  1/16/32/64, with the server's torch thread count; the fastest forward is the reference
  (the median is printed too: on a busy machine it mostly measures descheduled threads);
* Modelyard (``python -m modelyard serve``, one deployment per model with the product's
  batching defaults) at concurrency 1, 16 and 64, one sample per request, in the binary
  tensor extension of the Open Inference Protocol and in JSON tensors;
* the same model behind a bare FastAPI endpoint on uvicorn (``bench/peers/bare.py``: the same
  request, no batching, no checks, no key): what the model plus HTTP costs without a platform;
* an echo endpoint on the same stack (``bench/peers/echo.py``): the transport ceiling;
* LitServe with its own batching on the same weights, installed into ``.venv-peers`` on first
  use (JSON, its native format), unless ``--no-peers``;
* with ``--baseline-src DIR``, a second Modelyard server importing ``modelyard`` from ``DIR``
  (say an unchanged checkout's ``src``), measured in the same rounds: a before/after
  comparison that the machine's noise hits equally.

The machine is shared, so every system is measured in ``--rounds`` short rounds, taking turns
(the order rotates each round), and each cell prints the medians over the rounds: req/s, p50
and p99, with the CPU cores the server's processes used and the cores other processes on the
machine kept busy meanwhile (the noise). Every system's answer is first checked against the
in-process forward. Requests come from ``bench.loadgen`` in this process, so client and server
share the machine's cores.

    python -m bench serving
    python -m bench.serving --models mlp --no-peers --rounds 5 --baseline-src /tmp/base/src
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from bench._server import free_port, server_process
from bench.load import OtherLoad
from bench.loadgen import LoadResult, run_load

ROOT = Path(__file__).resolve().parent.parent
PEERS_VENV = ROOT / ".venv-peers"
PEER_TORCH = "torch==2.13.0"
CONCURRENCY = (1, 16, 64)
RAW_BATCHES = (1, 16, 32, 64)
LIMIT_BATCH = 32
RAW_SECONDS = 2.0
RAW_ROUNDS = 5
ROUNDS = 3


@dataclass(frozen=True)
class Case:
    """One model, how LitServe batches it, and how many requests each cell sends."""

    name: str
    label: str
    spec: dict[str, Any]
    peer_batch_size: int
    peer_batch_timeout_ms: float
    requests: int

    @property
    def sample_shape(self) -> list[int]:
        return [1, *self.spec["input_shape"]]


CASES = {
    "mlp": Case(
        "mlp",
        "mlp 784-512-512-10",
        {"arch": "mlp", "input_shape": [784], "hidden": [512, 512], "num_outputs": 10},
        peer_batch_size=32,
        peer_batch_timeout_ms=5.0,
        requests=2000,
    ),
    "cnn": Case(
        "cnn",
        "cnn 1x28x28 c32-c64",
        {"arch": "cnn", "input_shape": [1, 28, 28], "num_outputs": 10},
        peer_batch_size=32,
        peer_batch_timeout_ms=5.0,
        requests=1000,
    ),
}


class PeerUnavailable(Exception):
    """A peer could not be installed or started; the message says why."""


@dataclass
class System:
    """One server under test: where to send the benchmark's request, and how."""

    name: str
    url: str
    body: bytes
    headers: dict[str, str]
    pid: int
    decode: Callable[[httpx.Response], np.ndarray]
    """The first output of a reply, flattened, to check it against the in-process forward."""


@dataclass
class Cell:
    """What one system did at one concurrency, one entry per round."""

    results: list[LoadResult] = field(default_factory=list)
    cores: list[float] = field(default_factory=list)
    """CPU cores the server's processes used during each timed run."""
    others: list[float] = field(default_factory=list)
    """CPU cores other processes on the machine used during each timed run."""

    def median(self, value: Callable[[LoadResult], float]) -> float:
        return statistics.median(value(r) for r in self.results)

    @property
    def failed(self) -> int:
        return sum(len(r.latencies) - r.ok for r in self.results)


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


# -- request and reply bodies ------------------------------------------------------------------


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


def oip_output(reply: httpx.Response) -> np.ndarray:
    """The first output of an OIP reply, JSON or binary (one FP32 tensor), flattened."""
    length = reply.headers.get("inference-header-content-length")
    if length is None:
        return np.asarray(reply.json()["outputs"][0]["data"], dtype=np.float32)
    end = int(length)
    size = json.loads(reply.content[:end])["outputs"][0]["parameters"]["binary_data_size"]
    return np.frombuffer(reply.content[end : end + size], dtype="<f4")


def litserve_output(reply: httpx.Response) -> np.ndarray:
    return np.asarray(reply.json()["output"], dtype=np.float32).reshape(-1)


# -- processes --------------------------------------------------------------------------------


@contextlib.contextmanager
def background(command: list[str], ready_url: str, timeout: float = 120) -> Iterator[int]:
    """Run ``command`` in its own process group until ``ready_url`` answers 200; yields its pid."""
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
            yield proc.pid
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


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by process ``pid`` and its children."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


# -- measuring ----------------------------------------------------------------------------------


def requests_for(case: Case, concurrency: int) -> int:
    return case.requests if concurrency > 1 else case.requests // 2


def measure(system: System, requests: int, concurrency: int, cell: Cell, noise: OtherLoad) -> None:
    """Warm the connections and the server up, then time ``requests`` requests."""

    def send(count: int) -> LoadResult:
        return run_load(
            system.url,
            system.body,
            system.headers,
            requests=count,
            concurrency=concurrency,
            pause_gc=True,
        )

    send(max(50, 2 * concurrency))
    before = tree_cpu_seconds(system.pid)
    result = noise.measure(lambda: send(requests))
    cell.results.append(result)
    cell.cores.append((tree_cpu_seconds(system.pid) - before) / result.wall_s)
    cell.others.append(noise.runs[-1])


def run_rounds(systems: list[System], case: Case, rounds: int) -> dict[tuple[str, int], Cell]:
    """Every system at every concurrency, ``rounds`` times, taking turns."""
    cells = {(s.name, c): Cell() for s in systems for c in CONCURRENCY}
    noise = OtherLoad()
    for index in range(rounds):
        order = systems[index % len(systems) :] + systems[: index % len(systems)]
        for concurrency in CONCURRENCY:
            for system in order:
                cell = cells[(system.name, concurrency)]
                measure(system, requests_for(case, concurrency), concurrency, cell, noise)
        print(f"  {case.name}: round {index + 1} of {rounds} done", flush=True)
    return cells


def check_outputs(systems: list[System], expected: np.ndarray) -> dict[str, str]:
    checks = {}
    for system in systems:
        reply = httpx.post(system.url, content=system.body, headers=system.headers, timeout=60)
        if reply.status_code != 200:
            checks[system.name] = f"HTTP {reply.status_code}"
            continue
        got = system.decode(reply)
        same = got.shape == expected.shape and np.allclose(got, expected, atol=1e-4)
        checks[system.name] = "yes" if same else "NO"
    return checks


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def verdict(ok: bool) -> str:
    return "reached" if ok else "not reached"


# -- one model ----------------------------------------------------------------------------------


@dataclass
class CaseResult:
    case: Case
    runtime: str
    forward_s: dict[int, float]
    fastest_s: dict[int, float]
    systems: list[System]
    cells: dict[tuple[str, int], Cell]
    checks: dict[str, str]
    notes: list[str]


def deploy(srv: Any, case: Case, weights: Path) -> tuple[str, str, str]:
    """Register ``weights`` on a Modelyard server and deploy them with the product's defaults;
    returns the input name, the output name and the runtime it chose."""
    auth = {"Authorization": f"Bearer {srv.key}"}
    with httpx.Client(base_url=srv.url, headers=auth, timeout=300) as api:
        api.post("/api/v1/models", json={"name": case.name}).raise_for_status()
        api.post(
            f"/api/v1/models/{case.name}/versions",
            params={"filename": weights.name},
            content=weights.read_bytes(),
        ).raise_for_status()
        reply = api.post("/api/v1/deployments", json={"name": case.name, "model": case.name})
        reply.raise_for_status()
    version = reply.json()["versions"][0]
    return (
        version["inputs"][0]["name"],
        version["outputs"][0]["name"],
        str(version.get("runtime", "?")),
    )


def modelyard_systems(
    label: str, srv: Any, case: Case, weights: Path, sample: np.ndarray
) -> tuple[list[System], str]:
    input_name, output_name, runtime = deploy(srv, case, weights)
    url = f"{srv.url}/v2/models/{case.name}/infer"
    auth = {"Authorization": f"Bearer {srv.key}"}
    pid = srv.process.pid
    binary, binary_headers = oip_binary(input_name, output_name, sample)
    body, headers = oip_json(input_name, sample)
    return [
        System(f"{label} (OIP binary)", url, binary, {**auth, **binary_headers}, pid, oip_output),
        System(f"{label} (OIP JSON)", url, body, {**auth, **headers}, pid, oip_output),
    ], runtime


def run_case(
    case: Case,
    servers: list[tuple[str, Any]],
    echo: System,
    tmp: Path,
    threads: int,
    *,
    peers: bool,
    rounds: int,
) -> CaseResult:
    import torch

    from modelyard.nn import build_model, save_weights

    torch.manual_seed(0)
    model = build_model(case.spec).eval()
    forward_s, fastest_s = raw_forwards(model, case.sample_shape)
    weights = tmp / f"{case.name}.safetensors"
    save_weights(model, weights, spec=case.spec)
    sample = np.random.default_rng(0).random(case.sample_shape, dtype=np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(sample)).numpy().reshape(-1)

    systems: list[System] = []
    runtime = "?"
    for label, srv in servers:
        found, chosen = modelyard_systems(label, srv, case, weights, sample)
        systems += found
        runtime = chosen if label == "modelyard" else runtime
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        port = free_port()
        bare_pid = stack.enter_context(
            background(
                [
                    sys.executable,
                    "-m",
                    "bench.peers.bare",
                    str(port),
                    str(weights),
                    f"-t={threads}",
                ],
                f"http://127.0.0.1:{port}/ready",
                timeout=60,
            )
        )
        body, headers = oip_binary("input", "output", sample)
        systems.append(
            System(
                "bare FastAPI (OIP binary, no batching)",
                f"http://127.0.0.1:{port}/infer",
                body,
                headers,
                bare_pid,
                oip_output,
            )
        )
        if case.name == "mlp":
            systems.append(echo)
        if peers:
            peer = f"litserve (batch {case.peer_batch_size}, {case.peer_batch_timeout_ms:g} ms)"
            try:
                python = peers_python()
                port = free_port()
                command = [
                    str(python),
                    str(ROOT / "bench" / "peers" / "litserve_peer.py"),
                    str(port),
                    str(weights),
                    f"--max-batch-size={case.peer_batch_size}",
                    f"--batch-timeout-ms={case.peer_batch_timeout_ms}",
                    f"--threads={threads}",
                ]
                pid = stack.enter_context(background(command, f"http://127.0.0.1:{port}/health"))
                body = json.dumps({"input": sample.reshape(-1).tolist()}).encode()
                systems.append(
                    System(
                        peer + " JSON",
                        f"http://127.0.0.1:{port}/predict",
                        body,
                        {"Content-Type": "application/json"},
                        pid,
                        litserve_output,
                    )
                )
            except PeerUnavailable as exc:
                notes.append(f"litserve: unavailable ({exc})")
        checks = check_outputs([s for s in systems if s is not echo], expected)
        cells = run_rounds(systems, case, rounds)
    return CaseResult(case, runtime, forward_s, fastest_s, systems, cells, checks, notes)


def print_case(res: CaseResult, threads: int, rounds: int) -> list[str]:
    # The fastest forward is the reference: on a shared machine the median also measures
    # the wait for a descheduled torch thread, which would flatter the server's ratios.
    case, fwd = res.case, res.fastest_s
    limit = LIMIT_BATCH / fwd[LIMIT_BATCH]
    print(
        f"\n{case.label}: Modelyard deployment with the product defaults (runtime "
        f"{res.runtime}); LitServe max_batch_size={case.peer_batch_size}, batch_timeout "
        f"{case.peer_batch_timeout_ms:g} ms"
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
        f"raw limit: batch {LIMIT_BATCH}, {limit:,.0f} samples/s from the fastest forward; "
        "'raw forward' rows: one forward of a batch of as many samples as the concurrency"
    )
    print(
        f"medians of {rounds} rounds; 'cpu us': CPU the server's processes spent per request "
        "(the measure least hit by a busy machine); 'others': cores other processes on the "
        "machine kept busy meanwhile (the noise)"
    )
    bare = "bare FastAPI (OIP binary, no batching)"
    print(
        f"{'system':<44}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p99/p50':>8}"
        f"{'non-2xx':>8}{'cpu us':>7}{'others':>7}{'vs raw@32':>10}{'vs bare':>8}"
    )
    for concurrency in CONCURRENCY:
        raw = fwd.get(concurrency)
        if raw is not None:
            print(
                f"{'raw forward (batch = conc, in-process)':<44}{concurrency:>5}"
                f"{concurrency / raw:>9,.0f}{ms(raw):>9}{'':>9}"
            )
        for system in res.systems:
            cell = res.cells[(system.name, concurrency)]
            rate, p50 = cell.median(lambda r: r.req_per_s), cell.median(lambda r: r.p50)
            p99 = cell.median(lambda r: r.p99)
            base = res.cells[(bare, concurrency)].median(lambda r: r.req_per_s)
            cpu = statistics.median(
                cores / result.req_per_s * 1e6
                for cores, result in zip(cell.cores, cell.results, strict=True)
            )
            print(
                f"{system.name:<44}{concurrency:>5}{rate:>9,.0f}{ms(p50):>9}{ms(p99):>9}"
                f"{p99 / p50:>8.1f}{cell.failed:>8}{cpu:>7.0f}"
                f"{statistics.median(cell.others):>7.2f}{rate / limit:>10.2f}{rate / base:>8.2f}"
            )
    checks = ", ".join(f"{k} {v}" for k, v in res.checks.items())
    print(f"outputs equal to the in-process forward: {checks}")
    for note in res.notes:
        print(note)

    ours = {c: res.cells[("modelyard (OIP binary)", c)] for c in CONCURRENCY}
    bare_cells = {c: res.cells[(bare, c)] for c in CONCURRENCY}
    top = max(CONCURRENCY)
    goals = []
    p50_1, bare_p50_1 = ours[1].median(lambda r: r.p50), bare_cells[1].median(lambda r: r.p50)
    goals.append(
        f"{case.name}: p50 at concurrency 1 {ms(p50_1)} ms vs bare FastAPI {ms(bare_p50_1)} ms "
        f"+ 0.5 (goal <=): {verdict(p50_1 <= bare_p50_1 + 0.0005)}"
    )
    p50, p99 = ours[top].median(lambda r: r.p50), ours[top].median(lambda r: r.p99)
    goals.append(
        f"{case.name}: p99 at concurrency {top} {ms(p99)} ms = {p99 / p50:.1f} x p50 "
        f"{ms(p50)} ms (goal <= 2): {verdict(p99 <= 2 * p50)}"
    )
    rate = ours[top].median(lambda r: r.req_per_s)
    if case.name == "cnn":
        goals.append(
            f"{case.name}: {rate:,.0f} req/s at concurrency {top} = {rate / limit:.2f} x the raw "
            f"limit at batch {LIMIT_BATCH} (goal >= 0.7): {verdict(rate / limit >= 0.7)}"
        )
    peers = [s for s in res.systems if s.name.startswith("litserve")]
    if case.name == "mlp" and peers:
        best = max(res.cells[(s.name, top)].median(lambda r: r.req_per_s) for s in peers)
        goals.append(
            f"{case.name}: {rate:,.0f} req/s at concurrency {top} = {rate / best:.2f} x the best "
            f"peer's {best:,.0f} (goal >= 2): {verdict(rate >= 2 * best)}"
        )
    return goals


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serving benchmark (see bench/serving.py)")
    parser.add_argument("--models", default=",".join(CASES), help="comma-separated: mlp,cnn")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--no-peers", dest="peers", action="store_false")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also measure a Modelyard server importing modelyard from this folder",
    )
    args = parser.parse_args(argv if argv is not None else [])
    import torch

    started = time.perf_counter()
    threads = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"one machine, {cores} cores shared by the load generator and the servers under test "
        f"(load average before the run: {load}); torch threads {threads} everywhere"
    )
    print(
        "req/s and latencies from bench.loadgen (keep-alive HTTP/1.1, one connection per "
        "concurrent request, one sample per request); ratios are to numbers of this run"
    )
    mlp = CASES["mlp"]
    echo_body = oip_binary("input", "output", np.zeros(mlp.sample_shape, dtype=np.float32))[0]
    goals: list[str] = []
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="serving-") as tmp:
        port = free_port()
        echo_pid = stack.enter_context(
            background(
                [sys.executable, "-m", "bench.peers.echo", str(port)],
                f"http://127.0.0.1:{port}/ready",
                timeout=60,
            )
        )
        echo = System(
            "echo (FastAPI on uvicorn, no model)",
            f"http://127.0.0.1:{port}/echo",
            echo_body,
            {"Content-Type": "application/octet-stream"},
            echo_pid,
            oip_output,
        )
        servers = [("modelyard", stack.enter_context(server_process()))]
        if args.baseline_src is not None:
            source = str(args.baseline_src.resolve())
            servers.append(("baseline", stack.enter_context(server_process(PYTHONPATH=source))))
        results = [
            run_case(
                CASES[name],
                servers,
                echo,
                Path(tmp),
                threads,
                peers=args.peers,
                rounds=args.rounds,
            )
            for name in args.models.split(",")
        ]
    for res in results:
        goals += print_case(res, threads, args.rounds)
    print("\ngoals:")
    for line in goals:
        print(f"  {line}")
    print(f"run time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
