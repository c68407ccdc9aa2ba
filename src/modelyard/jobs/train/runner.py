"""Running a train job's plan inside its worker process.

Reads the data set's canonical form (memory-mapped where it can), resumes from the job's last
checkpoint if there is one, reports events, progress and checkpoints through the job's
:class:`~modelyard.jobs.reporter.JobReporter`, and registers the trained model as a new
version with its lineage and, for a table, the feature columns it reads.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors.torch import load_file

from modelyard.datasets.privacy_budget import settle
from modelyard.db.tables import Dataset
from modelyard.jobs.checkpoints import load_checkpoint
from modelyard.jobs.context import JobCancelled, JobContext
from modelyard.jobs.reporter import JobReporter
from modelyard.jobs.train.plan import TrainPlan
from modelyard.nn import save_weights
from modelyard.registry.service import VersionMeta
from modelyard.storage.staging import scratch_dir, stage_file
from modelyard.training import load_xy, train
from modelyard.training.config import TrainConfig

if TYPE_CHECKING:
    from modelyard.training import TrainResult


def start_state(
    ctx: JobContext, plan: TrainPlan, work: Path
) -> tuple[TrainConfig, dict[str, Any] | None, dict[str, Any] | None]:
    """The job's training config, its initial weights (fine-tuning) and its checkpoint.

    Weights and checkpoint are fetched from the blob store into ``work``; each is None when
    the job starts from scratch or has not checkpointed yet.
    """
    config = plan.config
    init_weights = None
    if plan.init is not None:
        weights = ctx.blobs.fetch_to(plan.init.sha256, work / "init.safetensors")
        init_weights = dict(load_file(str(weights)))
        if plan.init.replace_head:
            config = config.model_copy(update={"replace_head": True})
    return config, init_weights, load_checkpoint(ctx, work)


def run_train(ctx: JobContext, plan: TrainPlan) -> dict[str, Any]:
    """Train as the job's plan says, in this process; returns the job's result."""
    datasets = ctx.datasets
    with scratch_dir(ctx.settings.tmp_dir, f"job-{ctx.job_id}-") as work:
        started = time.monotonic()
        train_row = ctx.dataset(dataset_id=plan.dataset_id, name=plan.dataset)
        files = datasets.canonical_files(train_row, work / "train")
        x, y = load_xy(files, train_row.kind, plan.label, plan.features)  # type: ignore[arg-type]
        x_val = y_val = None
        if plan.validation_dataset:
            val_row = ctx.dataset(dataset_id=None, name=plan.validation_dataset)
            val_files = datasets.canonical_files(val_row, work / "val")
            x_val, y_val = load_xy(val_files, val_row.kind, plan.label, plan.features)  # type: ignore[arg-type]

        config, init_weights, resume = start_state(ctx, plan, work)
        if resume is not None:
            ctx.emit("resumed", {"step": ctx.checkpoint_step, "attempt": ctx.attempt})
            ctx.log(f"resuming from the checkpoint at step {ctx.checkpoint_step}")
        ctx.log(
            f"training {plan.arch_spec.arch} on '{train_row.name}' "
            f"({train_row.num_rows} rows), data ready in {time.monotonic() - started:.2f}s"
        )
        with JobReporter(ctx, work) as reporter:
            result = train(
                plan.arch_spec,
                config,
                x,
                y,
                x_val=x_val,
                y_val=y_val,
                init_weights=init_weights,
                callbacks=reporter,
                resume=resume,
            )
        if result.cancelled:
            raise JobCancelled
        return register_result(ctx, plan, result, train_row, work)


def feature_columns(row: Dataset, plan: TrainPlan) -> list[str] | None:
    """The columns of a table the model reads, in order (None for arrays)."""
    if row.kind != "table":
        return None
    if plan.features is not None:
        return list(plan.features)
    columns = (row.schema or {}).get("columns") or []
    return [str(c["name"]) for c in columns if c.get("name") != plan.label]


def register_result(
    ctx: JobContext,
    plan: TrainPlan,
    result: TrainResult,
    train_row: Dataset,
    work: Path,
) -> dict[str, Any]:
    """Push the trained model as a new version with its lineage; returns the job's result."""
    init = plan.init
    final_spec = result.spec.model_dump(mode="json")
    out = work / "model.safetensors"
    save_weights(result.model, out, spec=final_spec)
    staged = stage_file(out, ctx.settings.tmp_dir, 1 << 62)
    staged.filename = "model.safetensors"
    version = ctx.registry.push_version(
        ctx.owner,
        plan.output_model,
        staged,
        VersionMeta(
            format="safetensors",
            spec=final_spec,
            metrics=_flat_metrics(result.metrics),
            params={
                "config": plan.config.model_dump(mode="json"),
                "preprocessing": result.preprocessing,
                "history": result.history,
                "dataset": train_row.name,
                "dataset_sha256": train_row.sha256,
                "label": plan.label,
                "features": feature_columns(train_row, plan),
                "epochs_run": result.epochs_run,
                "steps": result.steps,
                "stopped_early": result.stopped_early,
                "device": result.device,
                **(
                    {"distributed": plan.distributed.model_dump(mode="json")}
                    if plan.distributed
                    else {}
                ),
                **({"privacy": result.privacy} if result.privacy is not None else {}),
            },
            description=f"trained by job {ctx.job_id}",
            parent_version=init.version if init else None,
            parent_model=init.model if init else None,
            dataset_id=train_row.id,
            job_id=ctx.job_id,
        ),
    )
    if result.privacy is not None:
        settle(
            ctx.db,
            ctx.job_id,
            model=plan.output_model,
            version=version.version,
            spent=result.privacy,
        )
    return {
        "model": plan.output_model,
        "version": version.version,
        "metrics": result.metrics,
        "epochs_run": result.epochs_run,
        "steps": result.steps,
        "stopped_early": result.stopped_early,
        **({"privacy": result.privacy} if result.privacy is not None else {}),
    }


def _flat_metrics(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """``{"train": {"accuracy": …}, "val": {…}}`` → ``{"train_accuracy": …, "val_…": …}``."""
    return {
        f"{split}_{name}": value
        for split, values in metrics.items()
        for name, value in values.items()
    }
