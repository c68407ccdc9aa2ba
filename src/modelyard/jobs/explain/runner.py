"""Running an explain job inside its worker process: the mean attribution of every input
value over rows of a data set, stored on the version it explains.

The version is loaded as serving loads it (:func:`modelyard.runtimes.load_runtime`, on torch
for a catalog version so that gradient methods work) and explained by
:func:`modelyard.serving.explain.explain`, a chunk of rows at a time; the job reports its
progress after each chunk and stops when cancelled. What is stored, under
``params.feature_importance.<method>`` of the version::

    {"dataset": "iris", "rows": 150, "target": "predicted", "baseline": "mean",
     "features": ["sepal_length", ...], "mean_abs": [0.41, ...], "mean": [0.02, ...],
     "job_id": "...", "at": "2026-..."}

Attributions are against the mean of the explained rows (the baseline), for each row's
predicted class.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from modelyard.auth.audit import record
from modelyard.db.tables import ModelVersion
from modelyard.errors import InvalidInput
from modelyard.formats import FILE_SUFFIX
from modelyard.jobs.context import JobCancelled, JobContext
from modelyard.jobs.explain.plan import ExplainPlan
from modelyard.jobs.planner import recorded_features
from modelyard.runtimes import VersionArtifact, load_runtime
from modelyard.serving.explain import ExplainLimits, ExplainOptions, explain, feature_names
from modelyard.storage.staging import scratch_dir
from modelyard.training import load_xy

CHUNK_ROWS = 32
LIMITS = ExplainLimits(max_rows=CHUNK_ROWS, max_evaluations=10**9)


def run_explain(ctx: JobContext, plan: ExplainPlan) -> dict[str, Any]:
    """Explain the plan's version over the plan's rows; store and return the importance."""
    owner = ctx.owner
    pinned = plan.source
    with scratch_dir(ctx.settings.tmp_dir, f"job-{ctx.job_id}-") as work:
        version = ctx.registry.get_version(owner, pinned.model, str(pinned.version))
        if version.sha256 != pinned.sha256:
            raise InvalidInput(f"source: version {version.version} changed since the job was made")
        path = ctx.blobs.fetch_to(version.sha256, work / f"model{FILE_SUFFIX[version.format]}")
        runtime = load_runtime(
            VersionArtifact(version.format, path, version.spec, version.signature, version.params),
            runtime="torch" if version.format == "safetensors" else "auto",
            device="auto",
            work_dir=work / "derived",
            threads=ctx.settings.job_threads,
        )
        data = ctx.dataset(dataset_id=plan.dataset_id, name=plan.dataset)
        files = ctx.datasets.canonical_files(data, work / "data")
        features = recorded_features(version.params, data.kind)
        x, _y = load_xy(files, data.kind, plan.label, features)  # type: ignore[arg-type]
        if len(runtime.inputs) != 1:
            raise InvalidInput("source: explain jobs take versions with one input")
        name = runtime.inputs[0].name
        rows = np.unique(np.linspace(0, len(x) - 1, plan.rows).astype(np.int64))
        # The reference is the average explained row: importance is measured against what
        # is typical of the data, not against zeros (which may lie far outside it).
        mean_row = np.asarray(x[rows], dtype=np.float64).mean(axis=0)
        options = ExplainOptions(
            method=plan.method,  # type: ignore[arg-type]
            baseline=mean_row,
            n_steps=plan.n_steps,
            n_samples=plan.n_samples,
            window=plan.window,
            seed=plan.seed,
        )
        total_abs: np.ndarray | None = None
        total: np.ndarray | None = None
        ctx.log(f"explaining {len(rows)} rows of '{data.name}' with {plan.method}")
        for start in range(0, len(rows), CHUNK_ROWS):
            if ctx.should_stop():
                raise JobCancelled
            chunk = np.asarray(x[rows[start : start + CHUNK_ROWS]])
            result = explain(runtime, {name: chunk}, options, LIMITS, batch_rows=256)
            values = result.attributions[name].reshape(len(chunk), -1)
            total_abs = np.abs(values).sum(axis=0) + (0 if total_abs is None else total_abs)
            total = values.sum(axis=0) + (0 if total is None else total)
            done = min(start + CHUNK_ROWS, len(rows))
            ctx.update(progress=done / len(rows))
        runtime.close()
    assert total_abs is not None and total is not None
    dataset = {"kind": data.kind, "schema": data.schema, "label": data.label}
    importance = {
        "dataset": data.name,
        "rows": len(rows),
        "target": "predicted",
        "baseline": "mean",
        "features": feature_names(dataset, version.params, len(total_abs)),
        "mean_abs": (total_abs / len(rows)).tolist(),
        "mean": (total / len(rows)).tolist(),
        "job_id": ctx.job_id,
        "at": datetime.now(UTC).isoformat(),
    }
    with ctx.db.session() as session:
        stored = session.get(ModelVersion, version.id)
        if stored is None:
            raise InvalidInput(f"source: version {version.version} was deleted meanwhile")
        params = dict(stored.params or {})
        params["feature_importance"] = {
            **(params.get("feature_importance") or {}),
            plan.method: importance,
        }
        stored.params = params
        record(
            session,
            owner,
            "version.explain",
            f"model:{pinned.model}/{version.version}",
            {"method": plan.method, "dataset": data.name, "job": ctx.job_id},
        )
    return {"model": pinned.model, "version": version.version, "feature_importance": importance}
