"""Running compress, finetune, distill and evaluate jobs inside a worker process.

A compression job loads its source version, evaluates it on the held-out data set, applies
its method, evaluates the child the same way, and records the report (size, parameters,
non-zeros, latency at batch 1 and 32, the metric and its change) on the job. A child that
fails the job's gate is not registered: the job fails, saying why, with the report in its
``metrics``. Otherwise the child becomes a new version whose lineage names its parent and
the method.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.compression import (
    Data,
    FitStopped,
    Source,
    compare,
    compress,
    flat_metrics,
    gate_failure,
    load_module,
    measure,
    objective_for,
    preprocessor_for,
)
from modelyard.compression.distill import distill
from modelyard.compression.report import onnxruntime_latency, slower_message
from modelyard.datasets.privacy_budget import settle
from modelyard.errors import InvalidInput
from modelyard.formats import FILE_SUFFIX
from modelyard.jobs.context import JobCancelled, JobContext, dataset_row, owner_caller
from modelyard.jobs.plans import DistillPlan, EvaluatePlan, PinnedVersion, SourcePlan
from modelyard.registry.keras import load_keras_model, save_keras_model
from modelyard.registry.service import VersionMeta
from modelyard.runtimes.outputs import OUTPUTS_PARAM, OutputKind
from modelyard.storage.staging import scratch_dir, stage_file
from modelyard.training import load_xy

if TYPE_CHECKING:
    from modelyard.compression import Child, Data, Source
    from modelyard.datasets.service import DatasetService
    from modelyard.training import Preprocessor


class _FitHooks:
    """Training progress as job events; the job's cancel request stops training."""

    def __init__(self, ctx: JobContext, start: float, end: float) -> None:
        self._ctx = ctx
        self._start = start
        self._end = end

    def on_epoch(self, event: dict[str, Any]) -> None:
        share = float(event.get("progress", 0.0))
        spent = {"privacy": event["privacy"]} if "privacy" in event else {}
        self._ctx.emit(
            "epoch",
            {
                "epoch": event.get("epoch"),
                "epochs": event.get("epochs"),
                "train": {"loss": event.get("loss")},
                "val": {},
                "progress": share,
                **spent,
            },
        )
        self._ctx.update(
            progress=self._start + (self._end - self._start) * share,
            **({"metrics": spent} if spent else {}),
        )

    def should_stop(self) -> bool:
        return self._ctx.should_stop()


Compared = SourcePlan | DistillPlan | EvaluatePlan
"""A plan that evaluates a version on held-out data."""


class _Job:
    """One job's services, scratch folder and owner."""

    def __init__(self, ctx: JobContext, work: Path) -> None:
        self.ctx = ctx
        self.work = work
        self.owner = owner_caller(ctx)
        self.datasets: DatasetService = ctx.datasets
        self.registry = ctx.registry

    def source(self, pinned: PinnedVersion, role: str) -> Source:
        """The pinned version, fetched, with a loader for its format."""
        version = self.registry.get_version(self.owner, pinned.model, str(pinned.version))
        if version.sha256 != pinned.sha256:
            raise InvalidInput(f"{role}: version {version.version} changed since the job was made")
        path = self.ctx.blobs.fetch_to(
            version.sha256, self.work / f"{role}{FILE_SUFFIX[version.format]}"
        )
        fmt, spec, params = version.format, version.spec, dict(version.params)
        if fmt == "keras":
            folder = self.work / f"{role}-keras"
            folder.mkdir(exist_ok=True)
            return Source(
                fmt,
                path,
                spec,
                params,
                version.signature,
                load=lambda: load_keras_model(path, folder),
                save=save_keras_model,
            )
        return Source(
            fmt,
            path,
            spec,
            params,
            version.signature,
            load=lambda: load_module(fmt, path, spec, params),
        )

    def rows(self, dataset_id: str, name: str, label: str | None) -> tuple[Any, Any]:
        """A data set's raw features and labels (memory-mapped where they can be)."""
        row = dataset_row(self.ctx, dataset_id=dataset_id, name=name)
        files = self.datasets.canonical_files(row, self.work / f"data-{row.id}")
        return load_xy(files, row.kind, label, None)  # type: ignore[arg-type]

    def data(self, source: Source, plan: Compared) -> tuple[Data, Preprocessor]:
        """Model-ready eval (and training or calibration) rows, and the preprocessing used."""
        x, y = self.rows(plan.eval_dataset_id, plan.eval_dataset, plan.label)
        pre = preprocessor_for(source.params, source.signature, y)
        labels = pre.encode_labels(y)
        data = Data(pre.apply(x), labels, objective_for(labels, pre.num_outputs))
        if not isinstance(plan, EvaluatePlan) and plan.fit_dataset_id and plan.fit_dataset:
            fx, fy = self.rows(plan.fit_dataset_id, plan.fit_dataset, plan.label)
            data.x_fit, data.y_fit = pre.apply(fx), pre.encode_labels(fy)
        return data, pre

    def measure(
        self, module: Any, artifact: Path | None, data: Data, outputs: OutputKind
    ) -> dict[str, Any]:
        """The report row of ``module``, whose outputs are ``outputs`` (logits or
        probabilities)."""
        objective = data.objective.with_outputs(outputs)
        return measure(module, artifact, data.x_eval, data.y_eval, objective)

    def register(
        self,
        plan: SourcePlan | DistillPlan,
        child: Child,
        report: dict[str, Any],
        params: dict[str, Any],
        parent: PinnedVersion,
    ) -> int:
        """Push the child as the next version of the output model; returns its number."""
        staged = stage_file(child.artifact, self.ctx.settings.tmp_dir, 1 << 62)
        staged.filename = "model" + FILE_SUFFIX[child.format]
        if child.compression is not None:
            params = {**params, "compression": child.compression}
        version = self.registry.push_version(
            self.owner,
            plan.output_model,
            staged,
            VersionMeta(
                format=child.format,
                spec=child.spec,
                metrics={**flat_metrics(report["child"]), "metric_delta": -report["metric_drop"]},
                params=params,
                description=plan.description or f"made by job {self.ctx.job_id}",
                parent_version=parent.version,
                parent_model=parent.model,
                dataset_id=plan.fit_dataset_id,
                job_id=self.ctx.job_id,
            ),
        )
        return version.version

    def report(
        self,
        plan: SourcePlan | DistillPlan,
        parent_row: dict[str, Any],
        child: Child,
        data: Data,
        outputs: OutputKind,
        parent_onnxruntime_ms: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        """Evaluate the child, compare, record the report on the job; fail on the gate.

        ``parent_onnxruntime_ms`` (a catalog parent's latency on ONNX Runtime) makes the
        speed comparison use the parent's faster engine, as ``runtime: auto`` serves it.
        """
        child_row = self.measure(child.module, child.artifact, data, outputs)
        report = compare(parent_row, child_row, parent_onnxruntime_ms)
        report["dataset"] = plan.eval_dataset
        report["facts"] = _summary(child.facts)
        self.ctx.update(metrics={"report": report}, progress=0.95)
        self.ctx.emit("report", {"metric": report["metric"], "ratio": report["ratio"]})
        slower = slower_message(report)
        if slower is not None:
            self.ctx.emit("slower_than_parent", report["speed"])
            self.ctx.log(slower)
        failure = gate_failure(report, plan.gate)
        if failure is not None:
            raise InvalidInput(f"{failure}; the child was not registered")
        return report


def _summary(facts: dict[str, Any]) -> dict[str, Any]:
    """Method facts for the report; a fine-tuning history shrinks to its last epoch."""
    out = {k: v for k, v in facts.items() if k != "fine_tune"}
    history = facts.get("fine_tune")
    if history:
        out["fine_tune"] = {"epochs": len(history), "final_loss": history[-1]["loss"]}
    return out


def _lineage(ctx: JobContext, parent: PinnedVersion, method: str) -> dict[str, Any]:
    return {
        "parent": parent.model_dump(mode="json"),
        "method": method,
        "job": ctx.job_id,
    }


def run_compress(ctx: JobContext) -> dict[str, Any]:
    """Run a compress or finetune job as its plan says; returns the job's result."""
    plan = ctx.plan(SourcePlan)
    method = plan.method
    with scratch_dir(ctx.settings.tmp_dir, f"job-{ctx.job_id}-") as work:
        job = _Job(ctx, work)
        started = time.monotonic()
        source = job.source(plan.source, "source")
        data, pre = job.data(source, plan)
        ctx.log(
            f"{method.name} of {plan.source.model} v{plan.source.version} "
            f"({source.format}); data ready in {time.monotonic() - started:.2f}s"
        )
        parent_row = job.measure(source.load(), source.path, data, source.outputs)
        parent_ort = None
        if source.family == "catalog":
            parent_ort = onnxruntime_latency(source.load(), data.x_eval, work)
        ctx.update(progress=0.2)
        child_dir = work / "child"
        child_dir.mkdir()
        try:
            child = compress(method, source, data, child_dir, _FitHooks(ctx, 0.2, 0.8))
        except FitStopped as exc:
            raise JobCancelled from exc
        report = job.report(plan, parent_row, child, data, source.outputs, parent_ort)
        params: dict[str, Any] = {
            "lineage": _lineage(ctx, plan.source, method.name),
            "method": method.model_dump(mode="json"),
            "report": report,
            "label": plan.label,
            OUTPUTS_PARAM: source.outputs,
        }
        if "preprocessing" in source.params or child.format in ("safetensors", "onnx"):
            params["preprocessing"] = pre.to_dict()
        if "privacy" in child.facts:
            params["privacy"] = child.facts["privacy"]
        version = job.register(plan, child, report, params, plan.source)
        if "privacy" in child.facts:
            settle(
                ctx.db,
                ctx.job_id,
                model=plan.output_model,
                version=version,
                spent=child.facts["privacy"],
            )
    return {
        "model": plan.output_model,
        "version": version,
        "method": method.name,
        "metrics": {"eval": report["child"]["metrics"]},
        "report": report,
    }


def run_distill(ctx: JobContext) -> dict[str, Any]:
    """Distill the teacher into the planned student; returns the job's result."""
    plan = ctx.plan(DistillPlan)
    options = plan.options
    with scratch_dir(ctx.settings.tmp_dir, f"job-{ctx.job_id}-") as work:
        job = _Job(ctx, work)
        teacher = job.source(plan.teacher, "teacher")
        data, pre = job.data(teacher, plan)
        teacher_module = teacher.load()
        parent_row = job.measure(teacher_module, teacher.path, data, teacher.outputs)
        ctx.update(progress=0.1)
        child_dir = work / "child"
        child_dir.mkdir()
        try:
            child = distill(
                teacher_module,
                plan.student_spec,
                data,
                options,
                child_dir,
                _FitHooks(ctx, 0.1, 0.85),
                teacher_outputs=teacher.outputs,
            )
        except FitStopped as exc:
            raise JobCancelled from exc
        report = job.report(plan, parent_row, child, data, "logits")
        params = {
            "lineage": _lineage(ctx, plan.teacher, "distill"),
            "distillation": {
                "teacher": plan.teacher.model_dump(mode="json"),
                "temperature": options.temperature,
                "alpha": options.alpha,
                "fit": options.fit.model_dump(mode="json"),
            },
            "report": report,
            "preprocessing": pre.to_dict(),
            "label": plan.label,
        }
        version = job.register(plan, child, report, params, plan.teacher)
    return {
        "model": plan.output_model,
        "version": version,
        "method": "distill",
        "metrics": {"eval": report["child"]["metrics"]},
        "report": report,
    }


def run_evaluate(ctx: JobContext) -> dict[str, Any]:
    """Evaluate one version on a data set; returns its report row."""
    plan = ctx.plan(EvaluatePlan)
    with scratch_dir(ctx.settings.tmp_dir, f"job-{ctx.job_id}-") as work:
        job = _Job(ctx, work)
        source = job.source(plan.source, "source")
        data, _pre = job.data(source, plan)
        row = job.measure(source.load(), source.path, data, source.outputs)
    row["dataset"] = plan.eval_dataset
    ctx.update(metrics={"report": row})
    return {
        "model": plan.source.model,
        "version": plan.source.version,
        "metrics": {"eval": row["metrics"]},
        "report": row,
    }
