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
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Imported here on purpose: the forkserver preloads this module, so every worker starts with
# torch, the training code and torch's compiler front end (which the first optimizer imports,
# about 4 s) already in memory.
import torch
import torch._dynamo
from sqlalchemy import update

from modelyard import training  # noqa: F401
from modelyard.config import Settings
from modelyard.db.engine import Database, create_database
from modelyard.db.tables import Job
from modelyard.errors import ModelyardError, without_paths
from modelyard.jobs.events import EventLog
from modelyard.jobs.state import finish, requeue
from modelyard.storage.base import BlobStore
from modelyard.storage.factory import build_blob_store
from modelyard.storage.workdirs import remove_process_dir

log = logging.getLogger("modelyard.worker")
PR_SET_PDEATHSIG = 1
# How often the worker reports that it is alive and looks for a cancel request.
POLL_INTERVAL_S = 0.5


class JobCancelled(Exception):
    """Raised inside a job when it was cancelled or taken over by another attempt."""


class JobRequeued(Exception):
    """Raised inside a job that should run again from its last checkpoint (a lost node)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _die_with_server(server_pid: int, tmp_dir: Path) -> None:
    """Make sure this worker does not outlive the server that launched it.

    The worker is forked by multiprocessing's fork server, which passes it the pipe whose
    closing tells the fork server its clients are gone; closing our copy lets the fork server
    exit with the server, and PR_SET_PDEATHSIG then kills us with it. A watchdog on the
    server's pid covers the rest (a server killed with SIGKILL runs no clean-up); it removes
    the worker's working files on its way out.
    """
    from multiprocessing import forkserver

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


@dataclass
class JobContext:
    """What a running job may use: its record, storage, events and a stop signal."""

    settings: Settings
    db: Database
    blobs: BlobStore
    events: EventLog
    job_id: str
    attempt: int
    owner_id: str
    spec: dict[str, Any]
    checkpoint_sha: str | None
    checkpoint_step: int | None
    job_type: str = "train"
    _last_poll: float = field(default=0.0)
    _stop: bool = field(default=False)

    def should_stop(self) -> bool:
        """True once the job is cancelled or re-assigned; also sends the heartbeat."""
        now = time.monotonic()
        if self._stop or now - self._last_poll < POLL_INTERVAL_S:
            return self._stop
        self._last_poll = now
        with self.db.session() as session:
            job = session.get(Job, self.job_id)
            if job is None or job.cancel_requested or job.attempt != self.attempt:
                self._stop = True
            elif job.status == "running":
                job.heartbeat_at = datetime.now(UTC)
        return self._stop

    def update(self, **values: Any) -> None:
        """Set fields of the job row (progress, eta_s, metrics, checkpoint…)."""
        with self.db.session() as session:
            session.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.attempt == self.attempt)
                .values(**values)
            )

    def emit(self, type_: str, data: dict[str, Any]) -> None:
        self.events.append(self.job_id, type_, data)

    def log(self, message: str) -> None:
        self.emit("log", {"message": message})


Runner = Callable[[JobContext], dict[str, Any]]


def runner_for(job_type: str) -> Runner:
    """The function that runs jobs of ``job_type`` and returns the job's result."""
    from modelyard.jobs.kinds import KINDS

    return KINDS[job_type].load_runner()


def worker_threads(settings: Settings) -> int:
    """CPU threads for one worker, so that the busy slots together fill the machine."""
    if settings.job_threads is not None:
        return settings.job_threads
    return max(1, (os.cpu_count() or 1) // settings.executor_slots)


def main(settings_json: str, job_id: str, attempt: int, server_pid: int) -> None:
    """Run one attempt of one job (the target of the local executor's child process)."""
    settings = Settings.model_validate_json(settings_json)
    _die_with_server(server_pid, settings.tmp_dir)
    try:
        run(settings, job_id, attempt, worker_threads(settings))
    finally:
        remove_process_dir(settings.tmp_dir)


def open_context(settings: Settings, job_id: str, attempt: int) -> JobContext:
    """A :class:`JobContext` of attempt ``attempt`` with this process's own connections."""
    db = create_database(settings.resolved_database_url)
    with db.session() as session:
        job = session.get_one(Job, job_id)
        return JobContext(
            settings=settings,
            db=db,
            blobs=build_blob_store(settings),
            events=EventLog(db),
            job_id=job_id,
            attempt=attempt,
            owner_id=job.owner_id,
            spec=dict(job.spec),
            checkpoint_sha=job.checkpoint_sha,
            checkpoint_step=job.checkpoint_step,
            job_type=job.type,
        )


def job_threads(spec: dict[str, Any], default: int) -> int:
    """CPU threads of a job: its ``resources.cpus`` when it gives them, else ``default``."""
    from modelyard.jobs.resources import stored_resources

    cpus = stored_resources(spec).cpus
    return max(1, int(cpus)) if cpus else default


def run(settings: Settings, job_id: str, attempt: int, threads: int) -> None:
    """Run one attempt of one job in this process and record its outcome."""
    ctx = open_context(settings, job_id, attempt)
    db, events = ctx.db, ctx.events
    torch.set_num_threads(job_threads(ctx.spec, threads))
    try:
        result = runner_for(ctx.job_type)(ctx)
        finish(events, job_id, "succeeded", attempt=attempt, result=result)
    except JobCancelled:
        with db.session() as session:
            current = session.get(Job, job_id)
            cancelled = bool(current and current.cancel_requested)
        if cancelled:
            finish(events, job_id, "cancelled", attempt=attempt)
    except JobRequeued as exc:
        events.append(job_id, "log", {"message": exc.why})
        requeue(db, events, job_id, attempt, exc.why)
    except ModelyardError as exc:
        detail = without_paths(exc.detail, settings.private_roots())
        events.append(job_id, "log", {"message": f"error: {detail}"})
        finish(events, job_id, "failed", attempt=attempt, error=detail)
    except Exception as exc:
        roots = settings.private_roots()
        events.append(job_id, "log", {"message": without_paths(traceback.format_exc(), roots)})
        error = without_paths(f"{type(exc).__name__}: {exc}", roots)
        finish(events, job_id, "failed", attempt=attempt, error=error)
    finally:
        db.dispose()
