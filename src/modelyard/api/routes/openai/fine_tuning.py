"""/v1/fine_tuning/jobs: OpenAI's fine-tuning API over the native ``llm_finetune`` jobs."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query

from modelyard.api.deps import CallerDep, PlatformDep
from modelyard.api.routes.openai.files import get_file
from modelyard.api.routes.openai.protocol import FineTuningJobRequest
from modelyard.api.routes.openai.target import deployment_name, served_model, unknown_model
from modelyard.auth.access import Caller, Permission
from modelyard.db.tables import Job, JobEvent
from modelyard.errors import InvalidInput, NotFound
from modelyard.platform import Platform

router = APIRouter(prefix="/v1/fine_tuning", tags=["OpenAI-compatible"])
JOB_PREFIX = "ftjob-"
JOB_TYPE = "llm_finetune"
STATUS = {
    "queued": "queued",
    "running": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}
PAGE = 1000


def _ts(moment: Any) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def job_object(job: Job) -> dict[str, Any]:
    spec = job.spec
    hyper = spec.get("hyperparameters", {})
    result = job.result or {}
    method: dict[str, Any] = {"type": "supervised", "supervised": {"hyperparameters": hyper}}
    if spec.get("method") == "lora":
        method["lora"] = spec.get("lora")
    error = None
    if job.status == "failed":
        error = {"code": "job_failed", "message": job.error or "failed", "param": None}
    return {
        "id": f"{JOB_PREFIX}{job.id}",
        "object": "fine_tuning.job",
        "model": spec.get("base", {}).get("model_id"),
        "created_at": _ts(job.created_at),
        "finished_at": _ts(job.finished_at),
        "fine_tuned_model": spec.get("fine_tuned_model") if job.status == "succeeded" else None,
        "organization_id": job.owner.name,
        "result_files": [],
        "status": STATUS.get(job.status, job.status),
        "training_file": spec.get("training_file"),
        "validation_file": spec.get("validation_file"),
        "hyperparameters": hyper,
        "method": method,
        "trained_tokens": result.get("trained_tokens"),
        "error": error,
        "seed": spec.get("seed"),
        "suffix": spec.get("suffix"),
        "estimated_finish": None,
        "integrations": [],
        "metadata": None,
    }


def _job(platform: Platform, caller: Caller, job_id: str) -> Job:
    native = job_id.removeprefix(JOB_PREFIX)
    try:
        job = platform.jobs.get(caller, native)
    except NotFound:
        job = None
    if job is None or job.type != JOB_TYPE:
        raise NotFound(f"No fine-tuning job with id '{job_id}'", param="fine_tuning_job_id")
    return job


@router.post("/jobs", summary="Create a fine-tuning job (OpenAI-compatible)")
async def create_job(
    body: FineTuningJobRequest, platform: PlatformDep, caller: CallerDep
) -> dict[str, Any]:
    try:
        row = await asyncio.to_thread(
            platform.deployments.check, caller, deployment_name(body.model), Permission.READ
        )
    except NotFound as exc:
        raise unknown_model(body.model) from exc
    if row.spec.get("model") is None:
        raise InvalidInput(f"'{body.model}' is a pipeline; it cannot be fine-tuned", param="model")
    served = await served_model(platform, caller, body.model)
    await asyncio.to_thread(get_file, platform, caller, body.training_file, "training_file")
    if body.validation_file:
        await asyncio.to_thread(get_file, platform, caller, body.validation_file, "validation_file")
    method = body.method
    hyper = body.hyperparameters
    if method is not None and method.supervised is not None:
        hyper = method.supervised.hyperparameters
    native: dict[str, Any] = {
        "type": JOB_TYPE,
        "model": {"from": row.spec["model"], "version": str(served.number)},
        "base_model_id": body.model,
        "training_file": body.training_file,
        "validation_file": body.validation_file,
        "suffix": body.suffix,
        "seed": body.seed,
        "method": "lora"
        if method is not None and (method.type == "lora" or method.lora)
        else "full",
        "hyperparameters": hyper.model_dump() if hyper is not None else {},
    }
    if method is not None and method.lora is not None:
        native["lora"] = method.lora.model_dump()
    try:
        job = await asyncio.to_thread(platform.jobs.submit, caller, native)
    except InvalidInput as exc:
        field = exc.extra.get("field")
        raise InvalidInput(exc.detail, param=field) from exc
    return job_object(job)


@router.get("/jobs", summary="List fine-tuning jobs (OpenAI-compatible)")
def list_jobs(
    platform: PlatformDep,
    caller: CallerDep,
    after: str | None = None,
    limit: int = Query(default=20, ge=1, le=100),
) -> dict[str, Any]:
    rows, _total = platform.jobs.list_jobs(caller, None, 500, 0)
    jobs = [job for job in rows if job.type == JOB_TYPE]
    if after is not None:
        ids = [f"{JOB_PREFIX}{job.id}" for job in jobs]
        jobs = jobs[ids.index(after) + 1 :] if after in ids else []
    page = jobs[:limit]
    return {
        "object": "list",
        "data": [job_object(job) for job in page],
        "has_more": len(jobs) > limit,
    }


@router.get("/jobs/{job_id}", summary="Retrieve a fine-tuning job (OpenAI-compatible)")
def retrieve_job(job_id: str, platform: PlatformDep, caller: CallerDep) -> dict[str, Any]:
    return job_object(_job(platform, caller, job_id))


@router.post("/jobs/{job_id}/cancel", summary="Cancel a fine-tuning job (OpenAI-compatible)")
def cancel_job(job_id: str, platform: PlatformDep, caller: CallerDep) -> dict[str, Any]:
    job = _job(platform, caller, job_id)
    return job_object(platform.jobs.cancel(caller, job.id))


def _all_events(platform: Platform, caller: Caller, job: Job) -> list[JobEvent]:
    events: list[JobEvent] = []
    while True:
        batch = platform.jobs.events(caller, job.id, events[-1].seq if events else 0, PAGE)
        events.extend(batch)
        if len(batch) < PAGE:
            return events


def _message(event: JobEvent) -> tuple[str, str, str]:
    """(level, message, type) of a native event."""
    data = event.data
    if event.type == "status":
        status = data.get("status")
        if status == "failed":
            return "error", f"Job failed: {data.get('error', '')}", "message"
        text = {
            "queued": "Job queued",
            "running": "Job started",
            "succeeded": "The job has successfully completed",
            "cancelled": "Job cancelled",
        }
        return "info", text.get(str(status), f"Job {status}"), "message"
    if event.type == "step":
        return (
            "info",
            f"Step {data.get('step')}: training loss={data.get('loss', 0):.4f}",
            "metrics",
        )
    if event.type == "epoch":
        val = (data.get("val") or {}).get("loss")
        extra = f", validation loss={val:.4f}" if isinstance(val, float) else ""
        return "info", f"Epoch {data.get('epoch')} done{extra}", "metrics"
    if event.type == "checkpoint":
        return "info", f"Checkpoint created at step {data.get('step')}", "message"
    return "info", str(data.get("message", event.type)), "message"


@router.get("/jobs/{job_id}/events", summary="List fine-tuning events (OpenAI-compatible)")
def list_events(
    job_id: str,
    platform: PlatformDep,
    caller: CallerDep,
    after: str | None = None,
    limit: int = Query(default=20, ge=1, le=1000),
) -> dict[str, Any]:
    job = _job(platform, caller, job_id)
    events = list(reversed(_all_events(platform, caller, job)))
    data = []
    for event in events:
        level, message, kind = _message(event)
        data.append(
            {
                "object": "fine_tuning.job.event",
                "id": f"ftevent-{job.id}-{event.seq}",
                "created_at": _ts(event.at),
                "level": level,
                "message": message,
                "data": event.data,
                "type": kind,
            }
        )
    if after is not None:
        ids = [d["id"] for d in data]
        data = data[ids.index(after) + 1 :] if after in ids else []
    return {"object": "list", "data": data[:limit], "has_more": len(data) > limit}


@router.get(
    "/jobs/{job_id}/checkpoints", summary="List fine-tuning checkpoints (OpenAI-compatible)"
)
def list_checkpoints(
    job_id: str,
    platform: PlatformDep,
    caller: CallerDep,
    after: str | None = None,
    limit: int = Query(default=10, ge=1, le=100),
) -> dict[str, Any]:
    job = _job(platform, caller, job_id)
    checkpoints = [e for e in _all_events(platform, caller, job) if e.type == "checkpoint"]
    data = [
        {
            "object": "fine_tuning.job.checkpoint",
            "id": f"ftckpt-{job.id}-{event.seq}",
            "created_at": _ts(event.at),
            "fine_tuned_model_checkpoint": event.data.get("fine_tuned_model_checkpoint"),
            "step_number": event.data.get("step"),
            "metrics": {
                "step": event.data.get("step"),
                "train_loss": (event.data.get("metrics") or {}).get("train_loss"),
                "valid_loss": (event.data.get("metrics") or {}).get("valid_loss"),
            },
            "fine_tuning_job_id": f"{JOB_PREFIX}{job.id}",
        }
        for event in reversed(checkpoints)
    ]
    if after is not None:
        ids = [d["id"] for d in data]
        data = data[ids.index(after) + 1 :] if after in ids else []
    return {
        "object": "list",
        "data": data[:limit],
        "has_more": len(data) > limit,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[min(limit, len(data)) - 1]["id"] if data else None,
    }


__all__ = ["router"]
