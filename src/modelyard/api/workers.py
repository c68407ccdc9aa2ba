"""A server run as several processes on one host and port (``modelyard serve --workers N``).

This process, the supervisor, binds the listening socket once and starts N worker processes
that accept connections on it. Workers are spawned (a fresh interpreter each: no threads,
locks or CUDA state inherited from the supervisor). Each builds its own
:class:`~modelyard.platform.Platform` and serves every deployment with its own copy of the
models and its own batcher, so its bounded queue (429) and deadlines (504) hold per process.
Worker 0 alone runs the job executor, the storage collector and gRPC: a job is claimed once.
Each worker's torch and ONNX Runtime use the cores divided by N (``OMP_NUM_THREADS``, unless
set), so the workers' compute threads do not outnumber the cores.

What the workers share goes through the database and two files:

- deployments: a change made through one worker is stamped in the data dir and the others
  reconcile at once (``serving/manager.py``), or at their next periodic reconcile;
- Prometheus metrics: every worker writes its series to the supervisor's own folder under
  the tmp dir (prometheus_client's multiprocess mode) and ``/metrics`` of any worker sums
  them over all workers, including the ones that have exited.

With ``serving_split`` (``--model-process``) the supervisor starts one more process first, the
model process (``api/model_process.py``): it loads every served version once and batches the
requests of all workers, which then hold no models (``serving/split.py``). It gets the
torch threads of every core and the workers one each; if it ends, the server stops.

SIGINT or SIGTERM to the supervisor stops every worker gracefully (requests in flight are
answered). A worker whose supervisor dies, even by ``kill -9``, is sent SIGTERM by the kernel
(Linux's parent-death signal), so no worker outlives it. A worker that dies after it has run
for a while is started again; one that dies at once stops the server.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from prometheus_client import multiprocess

from modelyard.config import Settings
from modelyard.storage.workdirs import process_dir

log = logging.getLogger("modelyard.workers")

# The environment variable through which prometheus_client's multiprocess mode is chosen: it is
# read when prometheus_client is imported, which a spawned worker does after it starts.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# A worker that ends within this many seconds of its start failed to start (a database that
# cannot be reached, a broken setting): starting it again would fail again.
MIN_LIFETIME_S = 30.0
# A worker has this long to answer what is in flight and release its resources.
STOP_TIMEOUT_S = 30.0
_PR_SET_PDEATHSIG = 1

Worker = Callable[[Settings, int, socket.socket, Path], None]
"""What runs in a worker: ``(settings, index, listening socket, metrics folder)``; it
returns when the worker has stopped."""

ModelProcess = Callable[[Settings, Path], None]
"""What runs in the model process of a split server: ``(settings, metrics folder)``; it
returns when it has stopped."""


def bind(host: str, port: int) -> socket.socket:
    """The listening socket every worker accepts on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def supervise(settings: Settings, worker: Worker, model_process: ModelProcess | None = None) -> int:
    """Run ``settings.workers`` processes of ``worker`` (and, given, one of ``model_process``
    before them) until SIGINT or SIGTERM; the exit status (0, or 1 when a worker failed to
    start or the model process ended)."""
    sock = bind(settings.host, settings.port)
    metrics_dir = process_dir(settings.tmp_dir) / "prometheus"
    metrics_dir.mkdir(exist_ok=True)
    for stale in metrics_dir.iterdir():
        stale.unlink()
    os.environ[METRICS_DIR_ENV] = str(metrics_dir)
    # Each worker computes its own batches: torch's default of a thread per core in every
    # worker would have N times more threads than cores contend for them. An operator's
    # OMP_NUM_THREADS stands.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads_given = "OMP_NUM_THREADS" in os.environ
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (cores or 1) // settings.workers)))
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def start(index: int) -> tuple[BaseProcess, float]:
        process = context.Process(
            target=_run,
            args=(worker, settings, index, sock, metrics_dir, os.getpid()),
            name=f"modelyard-worker-{index}",
        )
        process.start()
        log.info("worker %d started (pid %s)", index, process.pid)
        return process, time.monotonic()

    model: BaseProcess | None = None
    if model_process is not None:
        if not threads_given:  # the model process computes for all; the workers only parse
            os.environ["OMP_NUM_THREADS"] = str(cores or 1)
        model = context.Process(
            target=_run_model,
            args=(model_process, settings, metrics_dir, os.getpid()),
            name="modelyard-models",
        )
        model.start()
        log.info("model process started (pid %s)", model.pid)
        if not threads_given:
            os.environ["OMP_NUM_THREADS"] = "1"

    status = 0
    workers: list[tuple[BaseProcess, float]] = []
    try:  # what started is stopped, also when a later start fails
        workers += [start(index) for index in range(settings.workers)]
        while not stop.wait(0.5):
            if model is not None and not model.is_alive():
                log.error(
                    "the model process exited (status %s); stopping the server", model.exitcode
                )
                status = 1
                break
            for index, (process, started) in enumerate(workers):
                if process.is_alive():
                    continue
                assert process.pid is not None
                multiprocess.mark_process_dead(process.pid, str(metrics_dir))  # type: ignore[no-untyped-call]
                if time.monotonic() - started < MIN_LIFETIME_S:
                    log.error(
                        "worker %d exited at start (status %s); stopping the server",
                        index,
                        process.exitcode,
                    )
                    status = 1
                    stop.set()
                    break
                log.warning(
                    "worker %d exited (status %s); starting it again", index, process.exitcode
                )
                workers[index] = start(index)
    finally:
        # The workers first: the requests they answer while stopping need the model process.
        _stop_all([process for process, _ in workers], metrics_dir)
        if model is not None:
            _stop_all([model], metrics_dir)
        sock.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return status


def _stop_all(processes: list[BaseProcess], metrics_dir: Path) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            log.warning("worker pid %s did not stop in time; killing it", process.pid)
            process.kill()
            process.join()
        if process.pid is not None:
            multiprocess.mark_process_dead(process.pid, str(metrics_dir))  # type: ignore[no-untyped-call]


def _run(
    worker: Worker,
    settings: Settings,
    index: int,
    sock: socket.socket,
    metrics_dir: Path,
    supervisor: int,
) -> None:
    """A worker process's entry point."""
    _end_with(supervisor)
    worker(settings, index, sock, metrics_dir)


def _run_model(
    model_process: ModelProcess, settings: Settings, metrics_dir: Path, supervisor: int
) -> None:
    """The model process's entry point."""
    _end_with(supervisor)
    model_process(settings, metrics_dir)


def _end_with(supervisor: int) -> None:
    """Have the kernel send this process SIGTERM when its supervisor ends, however it ends."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:  # it ended before the signal was asked for
        os.kill(os.getpid(), signal.SIGTERM)
