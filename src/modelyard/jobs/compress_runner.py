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
    DistillOptions,
    FitStopped,
    Gate,
    Source,
    compare,
    compress,
    flat_metrics,
    gate_failure,
    load_module,
    measure,
    objective_for,
    parse_method,
    parse_model,
    preprocessor_for,
)
from modelyard.compression.distill import distill
from modelyard.errors import InvalidInput
from modelyard.jobs.context import JobCancelled, JobContext, dataset_row, owner_caller
from modelyard.registry.keras import load_keras_model, save_keras_model
from modelyard.registry.service import VersionMeta
from modelyard.runtimes.outputs import OUTPUTS_PARAM, OutputKind
from modelyard.storage.staging import scratch_dir, stage_file
from modelyard.training import load_xy

if TYPE_CHECKING:
    from modelyard.compression import Child, Data, Source
    from modelyard.datasets.service import DatasetService
    from modelyard.training import Preprocessor

_SUFFIX = {
    "safetensors": ".safetensors",
    "onnx": ".onnx",
    "torchscript": ".pt",
    "torch_export": ".pt2",
    "keras": ".keras",
}


class _FitHooks:
    """Training progress as job events; the job's cancel request stops training."""

    def __init__(self, ctx: JobContext, start: float, end: float) -> None:
        self._ctx = ctx
        self._start = start
        self._end = end

    def on_epoch(self, event: dict[str, Any]) -> None:
        share = float(event.get("progress", 0.0))
        self._ctx.emit(
            "epoch",
            {
                "epoch": event.get("epoch"),
                "epochs": event.get("epochs"),
                "train": {"loss": event.get("loss")},
                "val": {},
                "progress": share,
            },
        )
        self._ctx.update(progress=self._start + (self._end - self._start) * share)

    def should_stop(self) -> bool:
        return self._ctx.should_stop()


class _Job:
    """One job's services, scratch folder and owner."""

    def __init__(self, ctx: JobContext, work: Path) -> None:
        self.ctx = ctx
        self.work = work
        self.owner = owner_caller(ctx)
        self.datasets: DatasetService = ctx.datasets
        self.registry = ctx.registry

    def source(self, pinned: dict[str, Any], role: str) -> Source:
        """The pinned version, fetched, with a loader for its format."""

        version = self.registry.get_version(self.owner, pinned["model"], str(pinned["version"]))
        if version.sha256 != pinned["sha256"]:
            raise InvalidInput(f"{role}: version {version.version} changed since the job was made")
        path = self.ctx.blobs.fetch_to(
            version.sha256, self.work / f"{role}{_SUFFIX[version.format]}"
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

    def rows(self, dataset_id: str, name: str, label: str) -> tuple[Any, Any]:
        """A data set's raw features and labels (memory-mapped where they can be)."""

        row = dataset_row(self.ctx, dataset_id=dataset_id, name=name)
        files = self.datasets.canonical_files(row, self.work / f"data-{row.id}")
        return load_xy(files, row.kind, label, None)  # type: ignore[arg-type]

    def data(self, source: Source, spec: dict[str, Any]) -> tuple[Data, Preprocessor]:
        """Model-ready eval (and training or calibration) rows, and the preprocessing used."""

        x, y = self.rows(spec["eval_dataset_id"], spec["eval_dataset"], spec["label"])
        pre = preprocessor_for(source.params, source.signature, y)
        labels = pre.encode_labels(y)
        data = Data(pre.apply(x), labels, objective_for(labels, pre.num_outputs))
        if spec.get("fit_dataset_id"):
            fx, fy = self.rows(spec["fit_dataset_id"], spec["fit_dataset"], spec["label"])
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
        spec: dict[str, Any],
        child: Child,
        report: dict[str, Any],
        params: dict[str, Any],
        parent: dict[str, Any],
    ) -> int:
        """Push the child as the next version of the output model; returns its number."""

        staged = stage_file(child.artifact, self.ctx.settings.tmp_dir, 1 << 62)
        staged.filename = "model" + _SUFFIX[child.format]
        if child.compression is not None:
            params = {**params, "compression": child.compression}
        version = self.registry.push_version(
            self.owner,
            spec["output_model"],
            staged,
            VersionMeta(
                format=child.format,
                spec=child.spec,
                metrics={**flat_metrics(report["child"]), "metric_delta": -report["metric_drop"]},
                params=params,
                description=spec.get("description") or f"made by job {self.ctx.job_id}",
                parent_version=parent["version"],
                parent_model=parent["model"],
                dataset_id=spec.get("fit_dataset_id"),
                job_id=self.ctx.job_id,
            ),
        )
        return version.version

    def report(
        self,
        spec: dict[str, Any],
        parent_row: dict[str, Any],
        child: Child,
        data: Data,
        outputs: OutputKind,
    ) -> dict[str, Any]:
        """Evaluate the child, compare, record the report on the job; fail on the gate."""

        report = compare(parent_row, self.measure(child.module, child.artifact, data, outputs))
        report["dataset"] = spec["eval_dataset"]
        report["facts"] = _summary(child.facts)
        self.ctx.update(metrics={"report": report}, progress=0.95)
        self.ctx.emit("report", {"metric": report["metric"], "ratio": report["ratio"]})
        gate = parse_model(Gate, spec["gate"], "gate") if spec.get("gate") else None
        failure = gate_failure(report, gate)
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


def _lineage(ctx: JobContext, parent: dict[str, Any], method: str) -> dict[str, Any]:
    return {
        "parent": {k: parent[k] for k in ("model", "version", "sha256", "format")},
        "method": method,
        "job": ctx.job_id,
    }


def run_compress(ctx: JobContext) -> dict[str, Any]:
    """Run a compress or finetune job as its plan says; returns the job's result."""

    spec = ctx.spec
    method = parse_method(spec["method"])
    with scratch_dir(ctx.settings.tmp_dir, f"job-{ctx.job_id}-") as work:
        job = _Job(ctx, work)
        started = time.monotonic()
        source = job.source(spec["source"], "source")
        data, pre = job.data(source, spec)
        ctx.log(
            f"{method.name} of {spec['source']['model']} v{spec['source']['version']} "
            f"({source.format}); data ready in {time.monotonic() - started:.2f}s"
        )
        parent_row = job.measure(source.load(), source.path, data, source.outputs)
        ctx.update(progress=0.2)
        child_dir = work / "child"
        child_dir.mkdir()
        try:
            child = compress(method, source, data, child_dir, _FitHooks(ctx, 0.2, 0.8))
        except FitStopped as exc:
            raise JobCancelled from exc
        report = job.report(spec, parent_row, child, data, source.outputs)
        params: dict[str, Any] = {
            "lineage": _lineage(ctx, spec["source"], method.name),
            "method": method.model_dump(mode="json"),
            "report": report,
            "label": spec["label"],
            OUTPUTS_PARAM: source.outputs,
        }
        if "preprocessing" in source.params or child.format in ("safetensors", "onnx"):
            params["preprocessing"] = pre.to_dict()
        version = job.register(spec, child, report, params, spec["source"])
    return {
        "model": spec["output_model"],
        "version": version,
        "method": method.name,
        "metrics": {"eval": report["child"]["metrics"]},
        "report": report,
    }


def run_distill(ctx: JobContext) -> dict[str, Any]:
    """Distill the teacher into the planned student; returns the job's result."""

    spec = ctx.spec
    options = parse_model(DistillOptions, spec["options"], "options")
    with scratch_dir(ctx.settings.tmp_dir, f"job-{ctx.job_id}-") as work:
        job = _Job(ctx, work)
        teacher = job.source(spec["teacher"], "teacher")
        data, pre = job.data(teacher, spec)
        teacher_module = teacher.load()
        parent_row = job.measure(teacher_module, teacher.path, data, teacher.outputs)
        ctx.update(progress=0.1)
        child_dir = work / "child"
        child_dir.mkdir()
        try:
            child = distill(
                teacher_module,
                spec["student_spec"],
                data,
                options,
                child_dir,
                _FitHooks(ctx, 0.1, 0.85),
                teacher_outputs=teacher.outputs,
            )
        except FitStopped as exc:
            raise JobCancelled from exc
        report = job.report(spec, parent_row, child, data, "logits")
        params = {
            "lineage": _lineage(ctx, spec["teacher"], "distill"),
            "distillation": {
                "teacher": spec["teacher"],
                "temperature": options.temperature,
                "alpha": options.alpha,
                "fit": options.fit.model_dump(mode="json"),
            },
            "report": report,
            "preprocessing": pre.to_dict(),
            "label": spec["label"],
        }
        version = job.register(spec, child, report, params, spec["teacher"])
    return {
        "model": spec["output_model"],
        "version": version,
        "method": "distill",
        "metrics": {"eval": report["child"]["metrics"]},
        "report": report,
    }


def run_evaluate(ctx: JobContext) -> dict[str, Any]:
    """Evaluate one version on a data set; returns its report row."""
    spec = ctx.spec
    with scratch_dir(ctx.settings.tmp_dir, f"job-{ctx.job_id}-") as work:
        job = _Job(ctx, work)
        source = job.source(spec["source"], "source")
        data, _pre = job.data(source, spec)
        row = job.measure(source.load(), source.path, data, source.outputs)
    row["dataset"] = spec["eval_dataset"]
    ctx.update(metrics={"report": row})
    return {
        "model": spec["source"]["model"],
        "version": spec["source"]["version"],
        "metrics": {"eval": row["metrics"]},
        "report": row,
    }
