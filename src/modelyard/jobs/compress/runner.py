"""Running compress and distill jobs inside a worker process.

A compression job loads its source version, evaluates it on the held-out data set, applies
its method, evaluates the child the same way, and records the report (size, parameters,
non-zeros, latency at batch 1 and 32, the metric and its change) on the job. A child that
fails the job's gate is not registered: the job fails, saying why, with the report in its
``metrics``. Otherwise the child becomes a new version whose lineage names its parent and
the method. A finetune job runs the same way (:func:`run_compress`), its method
``finetune``.
"""

from __future__ import annotations

import time
from typing import Any

from modelyard.compression import FitStopped, compress
from modelyard.compression.distill import distill
from modelyard.compression.report import onnxruntime_latency
from modelyard.datasets.privacy_budget import settle
from modelyard.jobs.compress.plan import DistillPlan, SourcePlan
from modelyard.jobs.context import JobCancelled, JobContext
from modelyard.jobs.reporter import JobReporter
from modelyard.jobs.version_job import VersionJob, lineage
from modelyard.runtimes.outputs import OUTPUTS_PARAM
from modelyard.storage.staging import scratch_dir


def run_compress(ctx: JobContext, plan: SourcePlan) -> dict[str, Any]:
    """Run a compress or finetune job as its plan says; returns the job's result."""
    method = plan.method
    with scratch_dir(ctx.settings.tmp_dir, f"job-{ctx.job_id}-") as work:
        job = VersionJob(ctx, work)
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
            child = compress(
                method, source, data, child_dir, JobReporter(ctx, work, span=(0.2, 0.8))
            )
        except FitStopped as exc:
            raise JobCancelled from exc
        report = job.report(plan, parent_row, child, data, source.outputs, parent_ort)
        params: dict[str, Any] = {
            "lineage": lineage(ctx, plan.source, method.name),
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


def run_distill(ctx: JobContext, plan: DistillPlan) -> dict[str, Any]:
    """Distill the teacher into the planned student; returns the job's result."""
    options = plan.options
    with scratch_dir(ctx.settings.tmp_dir, f"job-{ctx.job_id}-") as work:
        job = VersionJob(ctx, work)
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
                JobReporter(ctx, work, span=(0.1, 0.85)),
                teacher_outputs=teacher.outputs,
            )
        except FitStopped as exc:
            raise JobCancelled from exc
        report = job.report(plan, parent_row, child, data, "logits")
        params = {
            "lineage": lineage(ctx, plan.teacher, "distill"),
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
