"""Batcher workers: a thread pool vs worker processes, for a tiny and a heavier model.

Each case keeps ``workers`` batches of 32 rows in flight, as the dynamic batcher does, and
counts rows per second; threads and processes alternate for ``ROUNDS`` rounds of ``SECONDS``
and the median is printed, so load from elsewhere on the machine hits both sides alike.
Threads call the model directly (torch releases the GIL inside its kernels); processes
receive the batch through shared memory, with a pipe message per batch to start it and to
say it is done. Torch gets ``cores // workers`` threads per worker on both sides so neither
oversubscribes the CPU.

    python -m bench.batcher_threads_vs_processes
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

BATCH = 32
SECONDS = 1.5
ROUNDS = 5
WARMUP = 5
CORES = os.cpu_count() or 1
MODELS: dict[str, dict[str, Any]] = {
    "mlp 784-512-512-10": {
        "arch": "mlp",
        "input_shape": [784],
        "hidden": [512, 512],
        "num_outputs": 10,
    },
    "cnn 1x28x28 c32-c64": {
        "arch": "cnn",
        "input_shape": [1, 28, 28],
        "conv": [{"channels": 32}, {"channels": 64}],
        "num_outputs": 10,
    },
}

Forward = Callable[[np.ndarray], np.ndarray]


def _model_forward(spec: dict[str, Any], threads: int) -> Forward:
    import torch

    from modelyard.nn import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(spec).eval()

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out: np.ndarray = model(torch.from_numpy(batch)).numpy()
        return out

    return forward


def _process_worker(
    spec: dict[str, Any], threads: int, conn: Connection, in_name: str, out_name: str
) -> None:
    forward = _model_forward(spec, threads)
    shape = (BATCH, *spec["input_shape"])
    in_shm, out_shm = SharedMemory(in_name), SharedMemory(out_name)
    inputs = np.ndarray(shape, np.float32, buffer=in_shm.buf)
    outputs = np.ndarray((BATCH, spec["num_outputs"]), np.float32, buffer=out_shm.buf)
    while conn.recv():
        outputs[:] = forward(inputs)
        conn.send(True)
    del inputs, outputs
    in_shm.close()
    out_shm.close()


class ProcessForward:
    """One worker process per slot; the batch crosses in shared memory, a pipe says go/done."""

    def __init__(self, spec: dict[str, Any], threads: int) -> None:
        ctx = mp.get_context("spawn")
        in_bytes = BATCH * int(np.prod(spec["input_shape"])) * 4
        self.in_shm = SharedMemory(create=True, size=in_bytes)
        self.out_shm = SharedMemory(create=True, size=BATCH * spec["num_outputs"] * 4)
        self.inputs = np.ndarray((BATCH, *spec["input_shape"]), np.float32, buffer=self.in_shm.buf)
        self.outputs = np.ndarray((BATCH, spec["num_outputs"]), np.float32, buffer=self.out_shm.buf)
        self.conn, child = ctx.Pipe()
        args = (spec, threads, child, self.in_shm.name, self.out_shm.name)
        self.proc = ctx.Process(target=_process_worker, args=args, daemon=True)
        self.proc.start()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.inputs[:] = batch
        self.conn.send(True)
        self.conn.recv()
        return self.outputs.copy()

    def close(self) -> None:
        self.conn.send(False)
        self.proc.join()
        del self.inputs, self.outputs
        for shm in (self.in_shm, self.out_shm):
            shm.close()
            shm.unlink()


def rows_per_second(forwards: list[Forward], batch: np.ndarray) -> float:
    """Rows/s with one batch in flight per forward, each on its own pool thread."""
    with ThreadPoolExecutor(len(forwards)) as pool:
        for fn in forwards:
            for _ in range(WARMUP):
                fn(batch)
        done = 0
        deadline = time.perf_counter() + SECONDS
        t0 = time.perf_counter()
        running: list[Future[np.ndarray]] = [pool.submit(fn, batch) for fn in forwards]
        while time.perf_counter() < deadline:
            for i, fut in enumerate(running):
                fut.result()
                done += BATCH
                running[i] = pool.submit(forwards[i], batch)
        for fut in running:
            fut.result()
            done += BATCH
        return done / (time.perf_counter() - t0)


def main() -> None:
    print(f"{CORES} cores, batch {BATCH}, median of {ROUNDS} x {SECONDS} s; rows/s")
    print(f"{'model':<22}{'workers':>8}{'threads':>12}{'processes':>12}{'thr/proc':>10}")
    for name, spec in MODELS.items():
        batch = np.random.default_rng(0).standard_normal(
            (BATCH, *spec["input_shape"]), dtype=np.float32
        )
        for workers in (1, 2):
            per_worker = max(1, CORES // workers)
            shared = _model_forward(spec, per_worker)
            procs = [ProcessForward(spec, per_worker) for _ in range(workers)]
            thread_runs, process_runs = [], []
            try:
                for _ in range(ROUNDS):
                    thread_runs.append(rows_per_second([shared] * workers, batch))
                    process_runs.append(rows_per_second(list(procs), batch))
            finally:
                for p in procs:
                    p.close()
            threads = statistics.median(thread_runs)
            processes = statistics.median(process_runs)
            ratio = threads / processes
            print(f"{name:<22}{workers:>8}{threads:>12,.0f}{processes:>12,.0f}{ratio:>10.2f}")


if __name__ == "__main__":
    main()
