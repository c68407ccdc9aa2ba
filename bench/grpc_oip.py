"""The Open Inference Protocol over gRPC against HTTP binary tensors, on one server.

One ``python -m modelyard serve`` with ``MODELYARD_GRPC_PORT`` set serves an MLP
784-512-512-10 (the serving benchmark's, so cheap that the transport dominates). The same
sample is sent one per request at concurrency 1 and 16, over HTTP/1.1 with the binary tensor
extension (``bench.loadgen``: keep-alive connections, one per concurrent request) and over
gRPC (``ModelInfer`` with ``raw_input_contents``, as ``tritonclient.grpc`` sends it, on one
HTTP/2 channel from a ``grpc.aio`` client with the request serialized once). The two take
turns for a few rounds so that a busy spell on the machine does not land on one of them;
each cell reports its best round. Client and server share the machine's cores. Prints req/s,
p50 and p99 and the ratio gRPC / HTTP, and checks that both answer what the model computes.

    python -m bench grpc
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import psutil

from bench._server import free_port, server_process
from bench.loadgen import LoadResult, run_load

SPEC = {"arch": "mlp", "input_shape": [784], "hidden": [512, 512], "num_outputs": 10}
CONCURRENCY = (1, 16)
REQUESTS = {1: 600, 16: 2000}
ROUNDS = 3
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


def http_body(sample: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """An Open Inference Protocol request with ``sample`` as binary tensor data."""
    raw = sample.astype("<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(sample.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "output", "parameters": {"binary_data": True}}],
        }
    ).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return header + raw, headers


def grpc_body(sample: np.ndarray) -> bytes:
    """The serialized ``ModelInferRequest`` tritonclient.grpc sends for ``sample``."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name="mlp")
    request.inputs.add(name="input", datatype="FP32", shape=list(sample.shape))
    request.outputs.add(name="output")
    request.raw_input_contents.append(sample.astype("<f4").tobytes())
    data: bytes = request.SerializeToString()
    return data


async def grpc_load(
    target: str, body: bytes, key: str, *, requests: int, concurrency: int
) -> LoadResult:
    """Send ``requests`` copies of ``body`` to ModelInfer from ``concurrency`` tasks."""
    import grpc

    result = LoadResult()
    metadata = (("authorization", f"Bearer {key}"),)
    left = requests
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(MODEL_INFER)  # bytes in, bytes out: no client-side codec

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                sent = time.perf_counter()
                try:
                    reply = await call(body, metadata=metadata)
                    status = 200
                except grpc.aio.AioRpcError:
                    reply, status = b"", 0
                result.latencies.append(time.perf_counter() - sent)
                result.statuses[status] += 1
                if status == 200 and not result.first_body:
                    result.first_body = reply

        await channel.channel_ready()
        started = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        result.wall_s = time.perf_counter() - started
    return result


def run_grpc(target: str, body: bytes, key: str, requests: int, concurrency: int) -> LoadResult:
    coro = grpc_load(target, body, key, requests=requests, concurrency=concurrency)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def grpc_output(body: bytes) -> np.ndarray:
    from tritonclient.grpc import service_pb2

    response = service_pb2.ModelInferResponse.FromString(body)
    return np.frombuffer(response.raw_output_contents[0], dtype="<f4")


def http_output(body: bytes) -> np.ndarray:
    """The binary output after the JSON header of an HTTP binary response."""
    _, end = json.JSONDecoder().raw_decode(body.decode("latin-1"))
    return np.frombuffer(body[end:], dtype="<f4")


def best(results: list[tuple[LoadResult, float]]) -> tuple[LoadResult, float]:
    return max(results, key=lambda r: r[0].req_per_s)


def timed(server: psutil.Process, run: Callable[[], LoadResult]) -> tuple[LoadResult, float]:
    """``run``'s result and the server's CPU seconds per request while it ran."""
    before = server.cpu_times()
    result = run()
    after = server.cpu_times()
    cpu = (after.user - before.user) + (after.system - before.system)
    return result, cpu / max(1, len(result.latencies))


def main() -> None:
    import torch

    from modelyard.nn import build_model, save_weights

    started = time.perf_counter()
    cores = len(os.sched_getaffinity(0))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"one machine, {cores} cores shared by the clients and the server "
        f"(load average before the run: {load}); model {SPEC['hidden']} MLP on 784 inputs, "
        "one sample per request"
    )
    torch.manual_seed(0)
    model = build_model(SPEC).eval()
    sample = np.random.default_rng(0).random((1, 784), dtype=np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(sample)).numpy().reshape(-1)
    port = free_port()
    rows: dict[tuple[str, int], list[tuple[LoadResult, float]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="modelyard-grpc-") as tmp,
        server_process(MODELYARD_GRPC_PORT=str(port)) as srv,
        httpx.Client(
            base_url=srv.url, headers={"Authorization": f"Bearer {srv.key}"}, timeout=300
        ) as api,
    ):
        weights = Path(tmp) / "mlp.safetensors"
        save_weights(model, weights, spec=SPEC)
        api.post("/api/v1/models", json={"name": "mlp"}).raise_for_status()
        api.post(
            "/api/v1/models/mlp/versions",
            params={"filename": weights.name},
            content=weights.read_bytes(),
        ).raise_for_status()
        deployment = {"name": "mlp", "model": "mlp", "max_batch_size": 64}
        api.post("/api/v1/deployments", json=deployment).raise_for_status()

        url = f"{srv.url}/v2/models/mlp/infer"
        body, headers = http_body(sample)
        headers["Authorization"] = f"Bearer {srv.key}"
        target = f"127.0.0.1:{port}"
        request = grpc_body(sample)
        server = psutil.Process(srv.process.pid)
        for concurrency in CONCURRENCY:
            warm = max(100, 4 * concurrency)
            run_load(url, body, headers, requests=warm, concurrency=concurrency)
            run_grpc(target, request, srv.key, warm, concurrency)
            n = REQUESTS[concurrency]
            for _ in range(ROUNDS):
                rows.setdefault(("HTTP binary", concurrency), []).append(
                    timed(
                        server,
                        lambda c=concurrency, n=n: run_load(
                            url, body, headers, requests=n, concurrency=c
                        ),
                    )
                )
                rows.setdefault(("gRPC raw", concurrency), []).append(
                    timed(
                        server, lambda c=concurrency, n=n: run_grpc(target, request, srv.key, n, c)
                    )
                )

    print(
        f"\n{'protocol':<14}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'server CPU ms/req':>19}"
    )
    for (name, concurrency), results in rows.items():
        r, cpu = best(results)
        print(
            f"{name:<14}{concurrency:>5}{r.req_per_s:>9,.0f}{r.p50 * 1e3:>9.2f}"
            f"{r.p99 * 1e3:>9.2f}{len(r.latencies) - r.ok:>8}{cpu * 1e3:>19.3f}"
        )
    for concurrency in CONCURRENCY:
        ratio = (
            best(rows[("gRPC raw", concurrency)])[0].req_per_s
            / best(rows[("HTTP binary", concurrency)])[0].req_per_s
        )
        print(f"gRPC / HTTP binary at concurrency {concurrency}: {ratio:.2f} x the req/s")
    first_http = best(rows[("HTTP binary", 1)])[0].first_body
    first_grpc = best(rows[("gRPC raw", 1)])[0].first_body
    checks = {
        "HTTP binary": np.allclose(http_output(first_http), expected, atol=1e-4),
        "gRPC raw": np.allclose(grpc_output(first_grpc), expected, atol=1e-4),
    }
    print(
        "outputs equal to the in-process forward: "
        + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in checks.items())
    )
    print(f"run time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
