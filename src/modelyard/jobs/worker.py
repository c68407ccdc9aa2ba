"""The entry point of a job's child process.

The worker opens its own database connection and blob store, runs the job, and records the
outcome itself. It dies with the server (``PR_SET_PDEATHSIG``), and stops on its own when
the job is cancelled or handed to another attempt. Its working files (decrypted data,
checkpoints and models in flight) live in its own working folder, which it removes when it
ends; if it is killed, the next sweep does.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import signal
import threading
import time
import traceback
from multiprocessing import forkserver
from pathlib import Path
from typing import Any

# Imported here on purpose: the forkserver preloads this module, so every worker starts with
# torch, the training code and torch's compiler front end (which the first optimizer imports,
# about 4 s) already in memory.
import torch
import torch._dynamo

import modelyard.training.loop  # noqa: F401
from modelyard.config import Settings
from modelyard.db.tables import Job
from modelyard.errors import ModelyardError, without_paths
from modelyard.jobs.context import JobCancelled, JobRequeued, open_context, worker_threads
from modelyard.jobs.kinds import KINDS
from modelyard.jobs.placement import Placement
from modelyard.jobs.resources import stored_resources
from modelyard.jobs.state import finish, requeue
from modelyard.storage.workdirs import remove_process_dir

log = logging.getLogger("modelyard.worker")
PR_SET_PDEATHSIG = 1


def _die_with_server(server_pid: int, tmp_dir: Path) -> None:
    """Make sure this worker does not outlive the server that launched it.

    The worker is forked by multiprocessing's fork server, which passes it the pipe whose
    closing tells the fork server its clients are gone; closing our copy lets the fork server
    exit with the server, and PR_SET_PDEATHSIG then kills us with it. A watchdog on the
    server's pid covers the rest (a server killed with SIGKILL runs no clean-up); it removes
    the worker's working files on its way out.
    """
    server = getattr(forkserver, "_forkserver", None)
    alive_fd = getattr(server, "_forkserver_alive_fd", None)
    if isinstance(alive_fd, int):
        with contextlib.suppress(OSError):
            os.close(alive_fd)
        setattr(server, "_forkserver_alive_fd", None)  # noqa: B010
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    def watch() -> None:
        while True:
            try:
                os.kill(server_pid, 0)
            except ProcessLookupError:
                remove_process_dir(tmp_dir)
                os._exit(75)
            except PermissionError:
                pass
            time.sleep(0.5)

    threading.Thread(target=watch, name="server-watchdog", daemon=True).start()


def main(
    settings_json: str, job_id: str, attempt: int, server_pid: int, placement: Placement
) -> None:
    """Run one attempt of one job (the target of the local executor's child process)."""
    settings = Settings.model_validate_json(settings_json)
    _die_with_server(server_pid, settings.tmp_dir)
    try:
        run(settings, job_id, attempt, worker_threads(settings), placement)
    finally:
        remove_process_dir(settings.tmp_dir)


def job_threads(spec: dict[str, Any], default: int) -> int:
    """CPU threads of a job: its ``resources.cpus`` when it gives them, else ``default``."""
    cpus = stored_resources(spec).cpus
    return max(1, int(cpus)) if cpus else default


def measured_usage(started: float, spec: dict[str, Any]) -> dict[str, Any]:
    """What this worker used so far: CPU-seconds (its own and its reaped children's),
    GPU-seconds (wall time on each GPU it used), wall time and peak memory."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic() - started
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    peak = max(own.ru_maxrss, children.ru_maxrss) * 1024  # kilobytes on Linux
    gpus = 0.0
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        gpus = stored_resources(spec).gpus or 1.0
        peak = max(peak, int(torch.cuda.max_memory_allocated()))
    return {"cpu_s": cpu, "gpu_s": wall * gpus, "wall_s": wall, "peak_memory_bytes": peak}


def run(settings: Settings, job_id: str, attempt: int, threads: int, placement: Placement) -> None:
    """Run one attempt of one job in this process, placed as its executor decided
    (``placement``), and record its outcome."""
    started = time.monotonic()
    ctx = open_context(settings, job_id, attempt)
    db, events = ctx.db, ctx.events
    torch.set_num_threads(job_threads(ctx.spec, threads))

    def used() -> dict[str, Any]:
        return measured_usage(started, ctx.spec)

    try:
        try:
            result = KINDS[ctx.job_type].run(ctx, placement)
        finally:
            # What the job reported comes before its outcome.
            ctx.flush()
        finish(events, job_id, "succeeded", attempt=attempt, result=result, usage=used())
    except JobCancelled:
        with db.session() as session:
            current = session.get(Job, job_id)
            cancelled = bool(current and current.cancel_requested)
        if cancelled:
            finish(events, job_id, "cancelled", attempt=attempt, usage=used())
    except JobRequeued as exc:
        events.append(job_id, "log", {"message": exc.why})
        requeue(db, events, job_id, attempt, exc.why)
    except ModelyardError as exc:
        detail = without_paths(exc.detail, settings.private_roots())
        events.append(job_id, "log", {"message": f"error: {detail}"})
        finish(events, job_id, "failed", attempt=attempt, error=detail, usage=used())
    except Exception as exc:
        roots = settings.private_roots()
        events.append(job_id, "log", {"message": without_paths(traceback.format_exc(), roots)})
        error = without_paths(f"{type(exc).__name__}: {exc}", roots)
        finish(events, job_id, "failed", attempt=attempt, error=error, usage=used())
    finally:
        ctx.close()
