"""Job executors: a supervisor thread in the server that runs queued jobs somewhere.

:class:`Executor` is the supervision both executors share: it claims queued jobs (a bounded
number at once), reaps finished ones (a crash or OOM marks only that job failed), enforces
cancellation (a job gets a grace period to stop by itself, then it is killed), and re-queues
jobs whose worker vanished (the server was killed): they resume from their last checkpoint.

:class:`LocalExecutor` runs each job in a child process of the server; the Ray executor
(:mod:`modelyard.jobs.ray_executor`) runs it as a task on a Ray cluster.
"""

from __future__ import annotations

import abc
import logging
import multiprocessing
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing import forkserver
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any, Generic, TypeVar

from sqlalchemy import select, update

from modelyard.config import Settings
from modelyard.db.engine import Database
from modelyard.db.tables import Job
from modelyard.errors import ModelyardError
from modelyard.jobs.events import EventLog
from modelyard.jobs.placement import Placement, placement_for
from modelyard.jobs.state import finish, requeue

log = logging.getLogger("modelyard.executor")

# How long a cancelled worker gets to stop by itself before it is killed.
CANCEL_GRACE_S = 5.0
# How many attempts a job whose worker was lost with its machine gets before it fails.
LOST_WORKER_ATTEMPTS = 3


def runner_name() -> str:
    """This server process, as recorded on the jobs it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


Handle = TypeVar("Handle")


@dataclass
class _Running(Generic[Handle]):
    handle: Handle
    attempt: int
    cancel_seen_at: float | None = None


@dataclass(frozen=True)
class Exit:
    """How a job's worker ended: ``ok`` when it recorded the outcome itself.

    ``lost``: the worker vanished with its machine rather than failing; the job goes back
    to the queue and resumes from its checkpoint (up to :data:`LOST_WORKER_ATTEMPTS`).
    """

    ok: bool
    why: str = ""
    lost: bool = False


class Executor(abc.ABC, Generic[Handle]):
    """Supervises jobs; subclasses say how a claimed job runs (:meth:`_spawn`)."""

    kind = "abstract"
    distributed: Placement = "ddp"
    """How this executor places a job whose plan is distributed."""

    def __init__(self, settings: Settings, db: Database, events: EventLog, slots: int) -> None:
        self._settings = settings
        self._db = db
        self._events = events
        self._slots = slots
        self._running: dict[str, _Running[Handle]] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runner = runner_name()

    # -- what a subclass provides ----------------------------------------------------
    def preflight(self) -> None:
        """Fail fast, with a message naming the setting to fix, if jobs cannot run."""

    def _prepare(self) -> None:
        """Get ready to run jobs (called once by :meth:`start`)."""

    @abc.abstractmethod
    def _spawn(self, job_id: str, attempt: int) -> tuple[Handle, str]:
        """Start attempt ``attempt`` of the job; its handle and the runner to record."""

    @abc.abstractmethod
    def _exit(self, handle: Handle) -> Exit | None:
        """None while the job's worker runs, then how it ended."""

    @abc.abstractmethod
    def _kill(self, handle: Handle) -> None:
        """Stop the worker now."""

    def _shutdown(self) -> None:
        """Release what :meth:`_prepare` took (after every worker was stopped)."""

    def placement(self, spec: dict[str, Any]) -> Placement:
        """Where a job with this stored plan runs when this executor runs it."""
        return placement_for(spec, self.distributed)

    def describe(self) -> dict[str, Any]:
        """What an operator wants to see of this executor (kind, slots, running jobs)."""
        return {"executor": self.kind, "slots": self._slots, "running": sorted(self._running)}

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Recover jobs orphaned by a previous server process, then supervise."""
        self._prepare()
        self._recover()
        self._thread = threading.Thread(target=self._loop, name="job-executor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop supervising and stop the workers; their jobs resume at the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=30)
        for job_id, running in list(self._running.items()):
            self._kill(running.handle)
            self._requeue(job_id, running.attempt, "the server stopped")
        self._running.clear()
        self._shutdown()

    def wake(self) -> None:
        """Look for work now (called when a job is submitted or cancelled)."""
        self._wake.set()

    # -- supervision -----------------------------------------------------------------
    def _loop(self) -> None:
        last_recover = time.monotonic()
        while not self._stop.is_set():
            try:
                self._reap()
                self._enforce_cancels()
                if time.monotonic() - last_recover > self._settings.job_heartbeat_timeout_s / 2:
                    self._recover()
                    last_recover = time.monotonic()
                self._launch()
            except Exception:
                log.exception("executor loop error")
            self._wake.wait(0.25)
            self._wake.clear()

    def _launch(self) -> None:
        while len(self._running) < self._slots and not self._stop.is_set():
            claimed = self._claim()
            if claimed is None:
                return
            job_id, attempt = claimed
            try:
                handle, runner = self._spawn(job_id, attempt)
            except Exception as exc:
                log.warning("could not start job %s: %s", job_id, exc)
                if isinstance(exc, ModelyardError):
                    why = exc.detail
                else:
                    why = f"{type(exc).__name__}: {exc}"
                finish(
                    self._events,
                    job_id,
                    "failed",
                    attempt=attempt,
                    error=f"the job could not be started: {why}",
                )
                continue
            self._running[job_id] = _Running(handle, attempt)
            with self._db.session() as session:
                session.execute(update(Job).where(Job.id == job_id).values(runner=runner))

    def _claim(self) -> tuple[str, int] | None:
        """Atomically move the oldest queued job to running; None if there is none."""
        for _ in range(5):
            with self._db.session() as session:
                job = session.scalar(
                    select(Job).where(Job.status == "queued").order_by(Job.created_at).limit(1)
                )
                if job is None:
                    return None
                attempt = job.attempt + 1
                now = datetime.now(UTC)
                changed = session.execute(
                    update(Job)
                    .where(Job.id == job.id, Job.status == "queued")
                    .values(
                        status="running",
                        attempt=attempt,
                        started_at=job.started_at or now,
                        heartbeat_at=now,
                        runner=self.runner,
                    )
                ).rowcount  # type: ignore[attr-defined]
            if changed:
                self._events.append(job.id, "status", {"status": "running", "attempt": attempt})
                return job.id, attempt
        return None

    def _reap(self) -> None:
        for job_id, running in list(self._running.items()):
            ended = self._exit(running.handle)
            if ended is None:
                continue
            del self._running[job_id]
            if ended.ok:
                continue  # the worker recorded the outcome itself
            with self._db.session() as session:
                job = session.get(Job, job_id)
                cancel = bool(job and job.cancel_requested)
                # A worker that failed after recording an outcome leaves it as it is.
                still_running = bool(job and job.status == "running")
            if not still_running:
                continue
            if cancel:
                finish(self._events, job_id, "cancelled", attempt=running.attempt)
            elif ended.lost and running.attempt < LOST_WORKER_ATTEMPTS:
                self._requeue(job_id, running.attempt, ended.why)
            else:
                finish(self._events, job_id, "failed", attempt=running.attempt, error=ended.why)

    def _enforce_cancels(self) -> None:
        if not self._running:
            return
        with self._db.session() as session:
            wanted = set(
                session.scalars(
                    select(Job.id).where(
                        Job.id.in_(list(self._running)), Job.cancel_requested.is_(True)
                    )
                )
            )
        now = time.monotonic()
        for job_id in wanted:
            running = self._running[job_id]
            if running.cancel_seen_at is None:
                running.cancel_seen_at = now
            elif now - running.cancel_seen_at > CANCEL_GRACE_S:
                self._kill(running.handle)

    def _recover(self) -> None:
        """Re-queue running jobs whose worker is gone, so they resume from a checkpoint."""
        stale_before = datetime.now(UTC) - timedelta(seconds=self._settings.job_heartbeat_timeout_s)
        host = socket.gethostname()
        with self._db.session() as session:
            jobs = session.scalars(select(Job).where(Job.status == "running")).all()
        for job in jobs:
            if job.id in self._running:
                continue
            orphan = False
            runner = job.runner or ""
            if runner.startswith(host + ":"):
                # Same machine: whether the worker (or its server) still exists is certain.
                server_part, _, worker_part = runner.partition("/")
                server_pid = int(server_part.rsplit(":", 1)[1])
                if worker_part:
                    orphan = not _pid_alive(int(worker_part))
                else:
                    orphan = server_pid != os.getpid() and not _pid_alive(server_pid)
            heartbeat = job.heartbeat_at
            if heartbeat is not None and heartbeat.tzinfo is None:
                heartbeat = heartbeat.replace(tzinfo=UTC)
            if heartbeat is None or heartbeat < stale_before:
                orphan = True
            if orphan:
                self._requeue(job.id, job.attempt, "its worker was lost")

    def _requeue(self, job_id: str, attempt: int, why: str) -> None:
        if requeue(self._db, self._events, job_id, attempt, why):
            self._wake.set()


class LocalExecutor(Executor[BaseProcess]):
    """Runs queued jobs in child processes of this server."""

    kind = "local"

    def __init__(self, settings: Settings, db: Database, events: EventLog) -> None:
        super().__init__(settings, db, events, settings.executor_slots)
        self._ctx: ForkServerContext | None = None

    def _prepare(self) -> None:
        ctx = multiprocessing.get_context("forkserver")
        # Workers fork from a server process that has torch imported already, so a job's
        # first step comes within a second of being picked up.
        ctx.set_forkserver_preload(["modelyard.jobs.worker"])
        self._ctx = ctx
        # Start the fork server (and its imports) now rather than on the first job.
        forkserver.ensure_running()

    def _spawn(self, job_id: str, attempt: int) -> tuple[BaseProcess, str]:
        assert self._ctx is not None
        # The worker module loads PyTorch; the server needs it only once it starts a job.
        from modelyard.jobs import worker

        with self._db.session() as session:
            placement = self.placement(dict(session.get_one(Job, job_id).spec))
        process = self._ctx.Process(
            target=worker.main,
            args=(self._settings.export_json(), job_id, attempt, os.getpid(), placement),
            name=f"job-{job_id}",
            daemon=False,
        )
        process.start()
        return process, f"{self.runner}/{process.pid}"

    def _exit(self, handle: BaseProcess) -> Exit | None:
        if handle.is_alive():
            return None
        handle.join()
        code = handle.exitcode
        if code == 0:
            return Exit(ok=True)
        how = f"was killed by signal {-code}" if code and code < 0 else f"exited with {code}"
        return Exit(ok=False, why=f"the job's worker process {how} (out of memory or a crash)")

    def _kill(self, handle: BaseProcess) -> None:
        if handle.is_alive():
            handle.kill()
            handle.join(timeout=5)
