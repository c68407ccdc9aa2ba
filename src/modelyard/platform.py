"""The composition root: builds every service from one Settings object.

Interfaces (the HTTP app, the CLI's ``serve``) create one :class:`Platform` and pass it down.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, multiprocess

from modelyard.auth.projects import ProjectService
from modelyard.auth.service import AuthService
from modelyard.config import Settings
from modelyard.datasets.formats import IntakeLimits
from modelyard.datasets.service import DatasetService
from modelyard.db.engine import Database, create_database
from modelyard.db.migrate import upgrade_to_head
from modelyard.jobs.context import registry_for
from modelyard.jobs.events import EventLog
from modelyard.jobs.executor import Executor, LocalExecutor
from modelyard.jobs.ray_executor import RayExecutor
from modelyard.jobs.service import JobService
from modelyard.registry.service import ModelRegistry
from modelyard.serving.facade import DeploymentFacade
from modelyard.serving.manager import DeploymentManager
from modelyard.serving.metrics import ServingMetrics
from modelyard.serving.service import DeploymentService
from modelyard.storage.base import BlobStore
from modelyard.storage.collector import CollectionReport, StorageCollector
from modelyard.storage.factory import build_blob_store
from modelyard.storage.workdirs import sweep
from modelyard.usage.service import UsageService


@dataclass
class Platform:
    """Every long-lived service of one server process."""

    settings: Settings
    db: Database
    blobs: BlobStore
    auth: AuthService
    projects: ProjectService
    datasets: DatasetService
    registry: ModelRegistry
    events: EventLog
    jobs: JobService
    executor: Executor[Any]
    deployments: DeploymentService
    serving: DeploymentManager
    deployment_facade: DeploymentFacade
    """Deployments end to end: rows and loaded models kept in step."""
    collector: StorageCollector
    metrics_registry: CollectorRegistry
    usage: UsageService
    warm: threading.Event = field(default_factory=threading.Event)
    metrics_dir: Path | None = None
    runs_jobs: bool = field(default=False, init=False)

    @classmethod
    def build(cls, settings: Settings, *, metrics_dir: Path | None = None) -> Platform:
        """Create directories, migrate the schema, and wire the services.

        ``metrics_dir`` is the PROMETHEUS_MULTIPROC_DIR of a server run as several processes
        (api/workers.py), whose metrics are summed over every process that writes there.
        """
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.tmp_dir.mkdir(parents=True, exist_ok=True)
        # Working files of processes that are gone (a crash, kill -9) go before anything else;
        # unreferenced blobs go in the collector's first pass, once the server has started.
        sweep(settings.tmp_dir)
        db = create_database(settings.resolved_database_url)
        upgrade_to_head(db.engine)
        blobs = build_blob_store(settings)
        datasets = DatasetService(db, blobs, settings.tmp_dir, IntakeLimits.from_settings(settings))
        registry = registry_for(settings, db, blobs)
        events = EventLog(db)
        executor: Executor[Any] = (
            RayExecutor(settings, db, events)
            if settings.executor == "ray"
            else LocalExecutor(settings, db, events)
        )
        usage = UsageService(settings, db)
        jobs = JobService(
            db, datasets, registry, events, settings.tmp_dir, executor.wake, usage.admit_job
        )
        deployments = DeploymentService(db, registry)
        metrics_registry = CollectorRegistry()
        serving = DeploymentManager(
            settings, deployments, registry, blobs, ServingMetrics(metrics_registry, metrics_dir)
        )
        auth = AuthService(db)
        return cls(
            settings=settings,
            db=db,
            blobs=blobs,
            auth=auth,
            projects=ProjectService(db, on_change=auth.forget_principal),
            datasets=datasets,
            registry=registry,
            events=events,
            jobs=jobs,
            executor=executor,
            deployments=deployments,
            serving=serving,
            deployment_facade=DeploymentFacade(deployments, serving),
            collector=StorageCollector(db, blobs, settings.tmp_dir, settings.collect_grace_s),
            metrics_registry=metrics_registry,
            usage=usage,
            metrics_dir=metrics_dir,
        )

    def metrics_view(self) -> CollectorRegistry:
        """What ``/metrics`` reads: this process's registry, or, run as several processes,
        every process's metrics summed from ``metrics_dir``."""
        if self.metrics_dir is None:
            return self.metrics_registry
        self.serving.metrics.llm.publish()
        view = CollectorRegistry()
        multiprocess.MultiProcessCollector(view, str(self.metrics_dir))  # type: ignore[no-untyped-call]
        return view

    def start(self, *, jobs: bool = True) -> None:
        """Start background work (the job executor, the collection passes); jobs left running
        resume.

        Without ``jobs`` this process claims no job and collects nothing: one process of a
        server run as several does that for all of them.
        """
        self.usage.start()
        self.runs_jobs = jobs
        if jobs:
            self.executor.start()
            self.collector.start(self.settings.collect_interval_s)
        # Checking a job spec needs torch and the catalog; import them now, off the request
        # path, so the first submission is not seconds slower than the rest.
        threading.Thread(target=self._warm_up, name="warm-up", daemon=True).start()

    def _warm_up(self) -> None:
        for module in ("modelyard.nn", "modelyard.training"):
            importlib.import_module(module)
        self.warm.set()

    def collect(self) -> CollectionReport:
        """Run one collection pass now: delete blobs no record references (past the grace
        period) and working files no live process owns."""
        return self.collector.run_once()

    def close(self) -> None:
        """Stop background work and release connections."""
        self.collector.stop()
        if self.runs_jobs:
            self.executor.stop()
        self.usage.stop()
        self.db.dispose()
