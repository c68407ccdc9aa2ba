"""Online inference: Modelyard's server against the raw forward, a bare endpoint and the peers.

For an MLP 784-512-512-10 (so cheap that HTTP dominates), an MNIST-style CNN (conv32-conv64-
fc128) and a BERT-mini-shaped encoder (token ids, seq 128, d_model 256, 4 layers, 4 heads,
FFN 1024; compute dominates), all measured in one run on the same machine:

* the raw limit: the catalog model in this process under ``torch.inference_mode`` at batch
  1/8/32/64, with the server's torch thread count; the fastest forward is the reference
  (the median is printed too: on a busy machine it mostly measures descheduled threads);
* Modelyard (``python -m modelyard serve``, one deployment per model with the product's
  batching defaults) at concurrency 1, 16 and 64, one sample per request, in the binary
  tensor extension of the Open Inference Protocol and in JSON tensors;
* the same model behind a bare FastAPI endpoint on uvicorn (``bench/peers/bare.py``: the same
  request, no batching, no checks, no key): what the model plus HTTP costs without a platform;
* an echo endpoint on the same stack (``bench/peers/echo.py``): the transport ceiling;
* the peers, each in its own virtual environment under ``.bench-venvs`` made on first use
  (``bench/peers/venvs.py``), serving the catalog's own module on the same weights and
  answering the same JSON (``{"input": [...]}`` -> ``{"output": [...]}``): TorchServe 0.12
  (Java front end, one worker, ``batchSize 32``, ``maxBatchDelay 5``) and LitServe 0.2.19
  (``max_batch_size 32``, ``batch_timeout 0.005``); a peer that cannot be installed or
  started is left out with the reason printed; ``--peers`` chooses, ``--no-peers`` skips;
* Modelyard run as ``--workers`` processes (default 2; 0 or 1: not), each with its own copy
  of the model and batcher, accepting on one socket: what more processes buy on this machine;
* and, beside it, the same number of thin HTTP processes handing every request's tensors to
  one model process that holds the only copy and the only batcher (``--model-process``,
  labelled ``split``; ``--no-split`` skips it), with the ratios of the three designs printed
  after each model's table (which one ``modelyard serve`` makes its default rests on these);
* with ``--baseline-src DIR``, a second Modelyard server importing ``modelyard`` from ``DIR``
  (say an unchanged checkout's ``src``), measured in the same rounds: a before/after
  comparison that the machine's noise hits equally.

The machine is shared, so every system is measured in ``--rounds`` short rounds, taking turns
(the order rotates each round), and each cell prints the medians over the rounds: req/s, p50
and p99, with the CPU cores the server's processes used and the cores other processes on the
machine kept busy meanwhile (the noise). Every reply of every system is checked against the
in-process forward by the load generator; a wrong one counts as failed. Requests come from
``bench.loadgen`` in this process, so client and server share the machine's cores. Ratios:
to the raw limit (at batch 32 and at the model's best batch) and to the best peer at the
same concurrency.

Each timed cell sends fewer requests than the case says when the warm-up shows they would
take over ``CELL_SECONDS``, so a run's length is bounded: a full run (3 rounds, 3 models,
both peers) takes about 15 minutes on 2 quiet cores, ``--quick`` (or ``BENCH_QUICK=1``: one
round, half the requests and seconds) about 5, plus a few minutes once to make the peers'
venvs. On a machine loaded 8x over, ``--quick`` took 22 minutes (BERT-mini's forwards ran
about 50x slower than on idle cores).

    python -m bench serving
    python -m bench.serving --quick --models bert --peers torchserve
    python -m bench.serving --models mlp --no-peers --rounds 5 --baseline-src /tmp/base/src
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
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
from bench.peers.torchserve_peer import torchserve_command
from bench.peers.venvs import PeerUnavailable, peer_python

ROOT = Path(__file__).resolve().parent.parent
PEERS = ("torchserve", "litserve")
CONCURRENCY = (1, 16, 64)
RAW_BATCHES = (1, 8, 32, 64)
LIMIT_BATCH = 32
RAW_SECONDS = 2.0
RAW_ROUNDS = 5
ROUNDS = 3
WARM_SECONDS = 5.0
"""How long each system is sent requests before the first round: TorchServe's Java front end
is still being compiled by the JIT through its first thousands of requests."""
CELL_SECONDS = 6.0
"""About how long one timed cell runs at most: fewer requests are sent when the warm-up
shows that the case's count would take longer (a busy machine, a slow model)."""


@dataclass(frozen=True)
class Case:
    """One model, how the peers batch it, and how many requests each cell sends."""

    name: str
    label: str
    spec: dict[str, Any]
    peer_batch_size: int
    peer_batch_timeout_ms: float
    requests: int

    @property
    def sample_shape(self) -> list[int]:
        return [1, *self.spec["input_shape"]]

    def inputs(self, batch: int, seed: int = 0) -> np.ndarray:
        """A batch of random inputs: floats in [0, 1), or token ids for a token model."""
        rng = np.random.default_rng(seed)
        shape = [batch, *self.spec["input_shape"]]
        vocab = self.spec.get("vocab_size")
        if vocab is not None:
            return rng.integers(0, vocab, shape, dtype=np.int64)
        return rng.random(shape, dtype=np.float32)


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
        "cnn 1x28x28 c32-c64-fc128",
        {"arch": "cnn", "input_shape": [1, 28, 28], "hidden": [128], "num_outputs": 10},
        peer_batch_size=32,
        peer_batch_timeout_ms=5.0,
        requests=1000,
    ),
    "bert": Case(
        "bert",
        "bert-mini encoder seq 128",
        {
            "arch": "transformer",
            "input_shape": [128],
            "vocab_size": 30522,
            "d_model": 256,
            "num_heads": 4,
            "num_layers": 4,
            "dim_feedforward": 1024,
            "dropout": 0.0,
            "num_outputs": 2,
        },
        peer_batch_size=32,
        peer_batch_timeout_ms=5.0,
        requests=300,
    ),
}


@dataclass
class System:
    """One server under test: where to send the benchmark's request, and how."""

    name: str
    url: str
    body: bytes
    headers: dict[str, str]
    pid: int
    decode: Callable[[bytes], np.ndarray] | None
    """The first output of a reply body, flattened, to check it against the in-process
    forward; None for a system without a model (the echo)."""
    peer: bool = False


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
        return sum(r.failed for r in self.results)


# -- the raw limit --------------------------------------------------------------------------


def raw_forwards(model: Any, case: Case) -> tuple[dict[int, float], dict[int, float]]:
    """Median and fastest seconds per forward of ``model`` at each of ``RAW_BATCHES``.

    The batch sizes take turns for ``RAW_ROUNDS`` rounds, so that a busy spell on the
    machine does not land on one batch size only.
    """
    import torch

    inputs = {b: torch.from_numpy(case.inputs(b, seed=b)) for b in RAW_BATCHES}
    times: dict[int, list[float]] = {b: [] for b in RAW_BATCHES}
    with torch.inference_mode():
        for x in inputs.values():
            for _ in range(2):
                model(x)
        for _ in range(RAW_ROUNDS):
            for batch, x in inputs.items():
                deadline = time.perf_counter() + RAW_SECONDS / RAW_ROUNDS
                count = 0
                while time.perf_counter() < deadline or count < 2:
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
    datatype, little = oip_datatype(sample)
    raw = sample.astype(little).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": input_name,
                    "shape": list(sample.shape),
                    "datatype": datatype,
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


def oip_datatype(sample: np.ndarray) -> tuple[str, str]:
    """The OIP datatype of ``sample`` and its little-endian numpy dtype."""
    if np.issubdtype(sample.dtype, np.integer):
        return "INT64", "<i8"
    return "FP32", "<f4"


def oip_json(input_name: str, sample: np.ndarray) -> tuple[bytes, dict[str, str]]:
    body = {
        "inputs": [
            {
                "name": input_name,
                "shape": list(sample.shape),
                "datatype": oip_datatype(sample)[0],
                "data": sample.reshape(-1).tolist(),
            }
        ]
    }
    return json.dumps(body).encode(), {"Content-Type": "application/json"}


def oip_output(body: bytes) -> np.ndarray:
    """The first output of an OIP reply body, JSON or binary (one FP32 tensor), flattened.

    A binary reply is a JSON header followed by the raw tensor; the header's end is found by
    decoding it (latin-1 keeps byte offsets), so the reply's headers are not needed.
    """
    header, end = json.JSONDecoder().raw_decode(body.decode("latin-1"))
    output = header["outputs"][0]
    if "data" in output:
        return np.asarray(output["data"], dtype=np.float32).reshape(-1)
    size = output["parameters"]["binary_data_size"]
    return np.frombuffer(body[end : end + size], dtype="<f4")


def peer_output(body: bytes) -> np.ndarray:
    """The output of a peer's ``{"output": [...]}`` reply, flattened."""
    return np.asarray(json.loads(body)["output"], dtype=np.float32).reshape(-1)


def same_output(got: np.ndarray, expected: np.ndarray) -> bool:
    """Whether a served output equals the in-process forward, to float32 rounding of a
    differently batched (or differently compiled) forward."""
    return got.shape == expected.shape and bool(np.allclose(got, expected, rtol=1e-3, atol=1e-4))


def checker(system: System, expected: np.ndarray) -> Callable[[bytes], bool] | None:
    """The load generator's check of one reply body of ``system``."""
    decode = system.decode
    if decode is None:
        return None

    def check(body: bytes) -> bool:
        try:
            return same_output(decode(body), expected)
        except (ValueError, KeyError, IndexError, TypeError):
            return False

    return check


# -- processes --------------------------------------------------------------------------------


@contextlib.contextmanager
def background(
    command: list[str],
    ready_url: str,
    timeout: float = 120,
    *,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
) -> Iterator[int]:
    """Run ``command`` in its own process group until ``ready_url`` answers 200; yields its pid."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
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


def measure(
    system: System,
    requests: int,
    concurrency: int,
    cell: Cell,
    noise: OtherLoad,
    check: Callable[[bytes], bool] | None,
    seconds: float = CELL_SECONDS,
) -> None:
    """Warm the connections and the server up, then time ``requests`` requests (fewer when
    they would take over ``seconds`` at the warm-up's rate), checking every reply."""

    def send(count: int) -> LoadResult:
        return run_load(
            system.url,
            system.body,
            system.headers,
            requests=count,
            concurrency=concurrency,
            pause_gc=True,
            check=check,
        )

    warm = send(max(20, concurrency))
    affordable = int(warm.req_per_s * seconds)
    requests = max(min(requests, affordable), 2 * concurrency, 20)
    before = tree_cpu_seconds(system.pid)
    result = noise.measure(lambda: send(requests))
    cell.results.append(result)
    cell.cores.append((tree_cpu_seconds(system.pid) - before) / result.wall_s)
    cell.others.append(noise.runs[-1])


def run_rounds(
    systems: list[System], case: Case, rounds: int, expected: np.ndarray, scale: float
) -> dict[tuple[str, int], Cell]:
    """Every system at every concurrency, ``rounds`` times, taking turns."""
    cells = {(s.name, c): Cell() for s in systems for c in CONCURRENCY}
    checks = {s.name: checker(s, expected) for s in systems}
    noise = OtherLoad()
    for system in systems:
        warm = Cell()
        check = checks[system.name]
        measure(system, case.requests * 2, 16, warm, noise, check, WARM_SECONDS * scale)
        if warm.failed:
            print(f"  {case.name}: {system.name}: {warm.failed} failed while warming up")
    for index in range(rounds):
        order = systems[index % len(systems) :] + systems[: index % len(systems)]
        for concurrency in CONCURRENCY:
            for system in order:
                cell = cells[(system.name, concurrency)]
                count = max(20, int(requests_for(case, concurrency) * scale))
                check = checks[system.name]
                measure(system, count, concurrency, cell, noise, check, CELL_SECONDS * scale)
        print(f"  {case.name}: round {index + 1} of {rounds} done", flush=True)
    return cells


def check_outputs(
    systems: list[System], expected: np.ndarray, wait_s: float = 60
) -> dict[str, str]:
    """Each system's first answer against the in-process forward; a system still loading
    its model (503, 500 or no connection) is given ``wait_s`` seconds to start answering."""
    checks = {}
    for system in systems:
        if system.decode is None:
            continue
        deadline = time.monotonic() + wait_s
        while True:
            try:
                reply = httpx.post(
                    system.url, content=system.body, headers=system.headers, timeout=120
                )
                status = reply.status_code
            except httpx.HTTPError:
                status = 0
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if status != 200:
            checks[system.name] = f"HTTP {status}"
            continue
        got = system.decode(reply.content)
        checks[system.name] = "yes" if same_output(got, expected) else "NO"
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


def start_peer(
    name: str,
    case: Case,
    weights: Path,
    sample: np.ndarray,
    threads: int,
    tmp: Path,
    stack: contextlib.ExitStack,
) -> System:
    """Start peer ``name`` (``torchserve`` or ``litserve``) on ``weights`` in its own venv,
    batching as the case says; raises PeerUnavailable, with the reason, when it cannot."""
    python = peer_python(name)
    batch, delay = case.peer_batch_size, case.peer_batch_timeout_ms
    port = free_port()
    src = {"PYTHONPATH": str(ROOT / "src")}
    if name == "litserve":
        label = f"litserve (batch {batch}, {delay:g} ms) JSON"
        command = [
            str(python),
            str(ROOT / "bench" / "peers" / "litserve_peer.py"),
            str(port),
            str(weights),
            f"--max-batch-size={batch}",
            f"--batch-timeout-ms={delay}",
            f"--threads={threads}",
        ]
        env = {**os.environ, **src}
        pid = stack.enter_context(background(command, f"http://127.0.0.1:{port}/health", env=env))
        url = f"http://127.0.0.1:{port}/predict"
    elif name == "torchserve":
        label = f"torchserve (batch {batch}, {delay:g} ms) JSON"
        workdir = tmp / f"torchserve-{case.name}"
        ports = (port, free_port(), free_port())
        command, env = torchserve_command(
            python,
            case.name,
            weights,
            workdir,
            ports,
            batch_size=batch,
            delay_ms=round(delay),
            threads=threads,
        )
        ready = f"http://127.0.0.1:{ports[0]}/ping"
        pid = stack.enter_context(background(command, ready, env=env, cwd=workdir))
        url = f"http://127.0.0.1:{port}/predictions/{case.name}"
    else:
        raise PeerUnavailable(f"unknown peer {name!r}")
    body = json.dumps({"input": sample.reshape(-1).tolist()}).encode()
    headers = {"Content-Type": "application/json"}
    return System(label, url, body, headers, pid, peer_output, peer=True)


def run_case(
    case: Case,
    servers: list[tuple[str, Any]],
    echo: System,
    tmp: Path,
    threads: int,
    *,
    peers: list[str],
    rounds: int,
    scale: float,
) -> CaseResult:
    import torch

    from modelyard.nn import build_model, save_weights

    torch.manual_seed(0)
    model = build_model(case.spec).eval()
    print(f"  {case.name}: raw forwards ...", flush=True)
    forward_s, fastest_s = raw_forwards(model, case)
    weights = tmp / f"{case.name}.safetensors"
    save_weights(model, weights, spec=case.spec)
    sample = case.inputs(1)
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
        for name in peers:
            try:
                systems.append(start_peer(name, case, weights, sample, threads, tmp, stack))
            except PeerUnavailable as exc:
                notes.append(f"{name}: left out ({exc})")
                print(f"  {case.name}: {name} left out ({exc})", flush=True)
        checks = check_outputs(systems, expected)
        cells = run_rounds(systems, case, rounds, expected, scale)
    return CaseResult(case, runtime, forward_s, fastest_s, systems, cells, checks, notes)


def print_case(res: CaseResult, threads: int, rounds: int) -> list[str]:
    # The fastest forward is the reference: on a shared machine the median also measures
    # the wait for a descheduled torch thread, which would flatter the server's ratios.
    case, fwd = res.case, res.fastest_s
    limit = LIMIT_BATCH / fwd[LIMIT_BATCH]
    best_batch = max(fwd, key=lambda b: b / fwd[b])
    best_limit = best_batch / fwd[best_batch]
    print(
        f"\n{case.label}: Modelyard deployment with the product defaults (runtime "
        f"{res.runtime}); peers batch up to {case.peer_batch_size} requests, waiting up to "
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
        f"raw limit: {limit:,.0f} samples/s at batch {LIMIT_BATCH} ('raw@32'), {best_limit:,.0f} "
        f"at the best batch {best_batch} ('raw best'), from the fastest forward; 'raw forward' "
        "rows: one forward of a batch of as many samples as the concurrency"
    )
    print(
        f"medians of {rounds} rounds; 'failed': non-2xx replies and replies unequal to the "
        "in-process forward (every reply is checked); 'cpu us': CPU the server's processes "
        "spent per request (the measure least hit by a busy machine); 'others': cores other "
        "processes on the machine kept busy meanwhile (the noise); 'peer': the best peer's "
        "req/s at the same concurrency"
    )
    bare = "bare FastAPI (OIP binary, no batching)"
    print(
        f"{'system':<44}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p99/p50':>8}"
        f"{'failed':>7}{'cpu us':>7}{'others':>7}{'vs raw@32':>10}{'vs raw best':>12}"
        f"{'vs bare':>8}{'vs peer':>8}"
    )
    peers = [s for s in res.systems if s.peer]

    def rate_of(name: str, concurrency: int) -> float:
        return res.cells[(name, concurrency)].median(lambda r: r.req_per_s)

    for concurrency in CONCURRENCY:
        raw = fwd.get(concurrency)
        if raw is not None:
            print(
                f"{'raw forward (batch = conc, in-process)':<44}{concurrency:>5}"
                f"{concurrency / raw:>9,.0f}{ms(raw):>9}{'':>9}"
            )
        base = rate_of(bare, concurrency)
        best_peer = max((rate_of(s.name, concurrency) for s in peers), default=math.nan)
        for system in res.systems:
            cell = res.cells[(system.name, concurrency)]
            rate, p50 = cell.median(lambda r: r.req_per_s), cell.median(lambda r: r.p50)
            p99 = cell.median(lambda r: r.p99)
            cpu = statistics.median(
                cores / result.req_per_s * 1e6 if result.req_per_s else math.nan
                for cores, result in zip(cell.cores, cell.results, strict=True)
            )
            print(
                f"{system.name:<44}{concurrency:>5}{rate:>9,.0f}{ms(p50):>9}{ms(p99):>9}"
                f"{p99 / p50:>8.1f}{cell.failed:>7}{cpu:>7.0f}"
                f"{statistics.median(cell.others):>7.2f}{rate / limit:>10.2f}"
                f"{rate / best_limit:>12.2f}{rate / base:>8.2f}{rate / best_peer:>8.2f}"
            )
    checks = ", ".join(f"{k} {v}" for k, v in res.checks.items())
    print(f"first reply equal to the in-process forward: {checks}")
    print_designs(res)
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
    failed = sum(res.cells[(s.name, c)].failed for s in res.systems for c in CONCURRENCY)
    goals.append(f"{case.name}: failed or wrong replies, all systems: {failed} (goal 0)")
    rate = ours[top].median(lambda r: r.req_per_s)
    if case.name == "cnn":
        goals.append(
            f"{case.name}: {rate:,.0f} req/s at concurrency {top} = {rate / limit:.2f} x the raw "
            f"limit at batch {LIMIT_BATCH} (goal >= 0.7): {verdict(rate / limit >= 0.7)}"
        )
    if case.name == "bert":
        goals.append(
            f"{case.name}: {rate:,.0f} req/s at concurrency {top} = {rate / best_limit:.2f} x "
            f"the raw limit at its best batch {best_batch} (goal >= 0.9): "
            f"{verdict(rate / best_limit >= 0.9)}"
        )
    if peers:
        best, name = max((rate_of(s.name, top), s.name) for s in peers)
        need = {"mlp": 2.0, "bert": 1.0}.get(case.name)
        goal = f" (goal >= {need:g}): {verdict(rate >= need * best)}" if need else ""
        goals.append(
            f"{case.name}: {rate:,.0f} req/s at concurrency {top} = {rate / best:.2f} x the best "
            f"peer's {best:,.0f} ({name}){goal}"
        )
    return goals


def print_designs(res: CaseResult) -> None:
    """Req/s of one process, N processes each with a copy of the model, and N HTTP processes
    with one model process (OIP binary), and their ratios."""
    names = [s.name for s in res.systems if s.name.startswith("modelyard")]
    single = "modelyard (OIP binary)"
    copy = next(
        (n for n in names if n.endswith("(OIP binary)") and "--workers" in n and "split" not in n),
        None,
    )
    split = next((n for n in names if n.endswith("split (OIP binary)")), None)
    if copy is None or split is None or copy == split:
        return
    print(
        "designs (OIP binary req/s): 1 process; N processes each holding a copy of the model "
        "('copy'); N HTTP processes and one model process ('split')"
    )
    print(
        f"{'conc':>5}{'1 process':>11}{'copy':>9}{'split':>9}{'copy/1':>8}{'split/1':>9}"
        f"{'split/copy':>11}{'p99 copy':>10}{'p99 split':>10}"
    )
    for concurrency in CONCURRENCY:
        one, many, two = (res.cells[(n, concurrency)] for n in (single, copy, split))
        r1, rc, rs = (c.median(lambda r: r.req_per_s) for c in (one, many, two))
        pc, ps = (c.median(lambda r: r.p99) for c in (many, two))
        print(
            f"{concurrency:>5}{r1:>11,.0f}{rc:>9,.0f}{rs:>9,.0f}{rc / r1:>8.2f}{rs / r1:>9.2f}"
            f"{rs / rc:>11.2f}{ms(pc):>10}{ms(ps):>10}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serving benchmark (see bench/serving.py)")
    parser.add_argument(
        "--models", default=",".join(CASES), help=f"comma-separated: {','.join(CASES)}"
    )
    parser.add_argument("--rounds", type=int, default=None, help=f"default {ROUNDS}")
    parser.add_argument(
        "--peers", default=",".join(PEERS), help=f"comma-separated: {','.join(PEERS)}"
    )
    parser.add_argument("--no-peers", dest="peers", action="store_const", const="")
    parser.add_argument(
        "--quick",
        action="store_true",
        default=bool(os.environ.get("BENCH_QUICK")),
        help="one round with half the requests (also BENCH_QUICK=1)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="also measure a Modelyard server with this many processes (0 or 1: not)",
    )
    parser.add_argument(
        "--no-split",
        dest="split",
        action="store_false",
        help="with --workers, do not also measure the split design (--model-process)",
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also measure a Modelyard server importing modelyard from this folder",
    )
    args = parser.parse_args(argv if argv is not None else [])
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else ROUNDS)
    scale = 0.5 if args.quick else 1.0
    peers = [p for p in args.peers.split(",") if p]
    unknown = sorted(set(peers) - set(PEERS)) + sorted(set(args.models.split(",")) - set(CASES))
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
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
            None,
        )
        servers = [("modelyard", stack.enter_context(server_process()))]
        if args.workers > 1:
            workers = server_process(MODELYARD_WORKERS=str(args.workers))
            servers.append((f"modelyard --workers {args.workers}", stack.enter_context(workers)))
            if args.split:
                split = server_process(
                    MODELYARD_WORKERS=str(args.workers), MODELYARD_SERVING_SPLIT="1"
                )
                servers.append(
                    (f"modelyard --workers {args.workers} split", stack.enter_context(split))
                )
        if args.baseline_src is not None:
            source = str(args.baseline_src.resolve())
            servers.append(("baseline", stack.enter_context(server_process(PYTHONPATH=source))))
        for name in args.models.split(","):
            res = run_case(
                CASES[name],
                servers,
                echo,
                Path(tmp),
                threads,
                peers=peers,
                rounds=rounds,
                scale=scale,
            )
            goals += print_case(res, threads, rounds)
            sys.stdout.flush()
    print("\ngoals:")
    for line in goals:
        print(f"  {line}")
    print(f"run time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
