"""Running an evaluate job inside a worker process: the version loaded as it is served, its
metrics, size and latency measured on the data set and recorded on the job."""

from __future__ import annotations

from typing import Any

from modelyard.jobs.context import JobContext
from modelyard.jobs.evaluate.plan import EvaluatePlan
from modelyard.jobs.version_job import VersionJob
from modelyard.storage.staging import scratch_dir


def run_evaluate(ctx: JobContext, plan: EvaluatePlan) -> dict[str, Any]:
    """Evaluate one version on a data set; returns its report row."""
    with scratch_dir(ctx.settings.tmp_dir, f"job-{ctx.job_id}-") as work:
        job = VersionJob(ctx, work)
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
