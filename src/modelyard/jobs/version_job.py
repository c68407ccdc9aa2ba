"""What the runners of jobs on existing versions share (compress, finetune, distill,
evaluate): :class:`VersionJob`, one job's pinned versions fetched and loaded, its data sets
read and preprocessed as the version expects, a module measured, a child compared with its
parent (failing on the job's gate) and registered with its lineage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelyard.compression import (
    Child,
    Data,
    Source,
    compare,
    flat_metrics,
    gate_failure,
    load_module,
    measure,
    objective_for,
    preprocessor_for,
)
from modelyard.compression.report import slower_message
from modelyard.datasets.service import DatasetService
from modelyard.errors import InvalidInput
from modelyard.formats import FILE_SUFFIX
from modelyard.jobs.compress.plan import DistillPlan, SourcePlan
from modelyard.jobs.context import JobContext
from modelyard.jobs.evaluate.plan import EvaluatePlan
from modelyard.jobs.planner import recorded_features
from modelyard.jobs.plans import PinnedVersion
from modelyard.registry.keras import load_keras_model, save_keras_model
from modelyard.registry.service import VersionMeta
from modelyard.runtimes.outputs import OutputKind
from modelyard.storage.staging import stage_file
from modelyard.training import Preprocessor, load_xy

Compared = SourcePlan | DistillPlan | EvaluatePlan
"""A plan that evaluates a version on held-out data."""


class VersionJob:
    """One job's services, scratch folder and owner."""

    def __init__(self, ctx: JobContext, work: Path) -> None:
        self.ctx = ctx
        self.work = work
        self.owner = ctx.owner
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

    def rows(
        self, dataset_id: str, name: str, label: str | None, source: Source
    ) -> tuple[Any, Any]:
        """A data set's raw features (of a table, the columns ``source`` reads) and labels,
        memory-mapped where they can be."""
        row = self.ctx.dataset(dataset_id=dataset_id, name=name)
        files = self.datasets.canonical_files(row, self.work / f"data-{row.id}")
        features = recorded_features(source.params, row.kind)
        return load_xy(files, row.kind, label, features)  # type: ignore[arg-type]

    def data(self, source: Source, plan: Compared) -> tuple[Data, Preprocessor]:
        """Model-ready eval (and training or calibration) rows, and the preprocessing used."""
        x, y = self.rows(plan.eval_dataset_id, plan.eval_dataset, plan.label, source)
        pre = preprocessor_for(source.params, source.signature, y)
        labels = pre.encode_labels(y)
        data = Data(pre.apply(x), labels, objective_for(labels, pre.num_outputs))
        if not isinstance(plan, EvaluatePlan) and plan.fit_dataset_id and plan.fit_dataset:
            fx, fy = self.rows(plan.fit_dataset_id, plan.fit_dataset, plan.label, source)
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
        report["facts"] = summary(child.facts)
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


def summary(facts: dict[str, Any]) -> dict[str, Any]:
    """Method facts for the report; a fine-tuning history shrinks to its last epoch."""
    out = {k: v for k, v in facts.items() if k != "fine_tune"}
    history = facts.get("fine_tune")
    if history:
        out["fine_tune"] = {"epochs": len(history), "final_loss": history[-1]["loss"]}
    return out


def lineage(ctx: JobContext, parent: PinnedVersion, method: str) -> dict[str, Any]:
    return {
        "parent": parent.model_dump(mode="json"),
        "method": method,
        "job": ctx.job_id,
    }
