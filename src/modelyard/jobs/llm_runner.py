"""Running a language-model fine-tuning job inside its worker process.

Unpacks the base version, trains on the job's files (full or LoRA), reports step, epoch and
checkpoint events, registers the result as a version of the job's output model, and deploys it
under the fine-tuned model's name, so ``/v1`` can use it at once. A full fine-tune (or a
merged LoRA) is an ``hf`` version, a model of its own; a LoRA adapter is a ``lora`` version
holding the adapter alone (its parent: the base version), deployed on a deployment of the base
version (one that serves it already, else one made for it), whose loaded model it shares.
"""

from __future__ import annotations

import io
import math
import tarfile
import time
from pathlib import Path
from typing import Any

from modelyard.auth.access import Caller, Permission
from modelyard.errors import Conflict, NotFound
from modelyard.jobs.checkpoints import load_checkpoint, store_checkpoint
from modelyard.jobs.context import JobCancelled, JobContext, owner_caller
from modelyard.jobs.plans import LlmBase, LlmFineTunePlan
from modelyard.llm.data import parse_examples
from modelyard.llm.finetune import FineTuneConfig, fine_tune
from modelyard.llm.language_model import load_causal_lm
from modelyard.registry.formats.hf import unpack_hf
from modelyard.registry.formats.lora import LORA_FORMAT
from modelyard.registry.service import ModelRegistry, VersionMeta
from modelyard.serving.service import DeploymentService
from modelyard.storage.staging import scratch_dir, stage_file


class _Reporter:
    """The training loop's callbacks, turned into job events, progress and checkpoints."""

    def __init__(self, ctx: JobContext, work: Path, total_steps: int, fine_tuned: str) -> None:
        self._ctx = ctx
        self._work = work
        self._total = max(1, total_steps)
        self._fine_tuned = fine_tuned
        self._started = time.monotonic()

    def on_step(self, step: int, epoch: int, loss: float, lr: float) -> None:
        self._ctx.emit("step", {"epoch": epoch, "step": step, "loss": loss, "lr": lr})
        elapsed = time.monotonic() - self._started
        progress = min(1.0, step / self._total)
        eta = elapsed / progress * (1 - progress) if progress > 0 else None
        self._ctx.update(progress=progress, eta_s=eta)

    def on_epoch(self, epoch: int, step: int, train_loss: float, valid_loss: float | None) -> None:
        self._ctx.emit(
            "epoch",
            {
                "epoch": epoch,
                "step": step,
                "train": {"loss": train_loss},
                "val": {"loss": valid_loss},
            },
        )
        self._ctx.update(
            metrics={"train": {"loss": train_loss}, "val": {"loss": valid_loss}, "epoch": epoch}
        )

    def save_checkpoint(self, state: dict[str, Any], step: int) -> None:
        if not store_checkpoint(self._ctx, self._work, state, step=step):
            return
        if state["position"] or not state["history"]:
            return  # inside an epoch: kept for a resume, not one of OpenAI's checkpoints
        done = state["history"][-1]
        self._ctx.emit(
            "checkpoint",
            {
                "step": step,
                "epoch": done["epoch"],
                "metrics": {"train_loss": done["train_loss"], "valid_loss": done["valid_loss"]},
                "fine_tuned_model_checkpoint": f"{self._fine_tuned}:ckpt-step-{step}",
            },
        )

    def should_stop(self) -> bool:
        return self._ctx.should_stop()


def _examples(ctx: JobContext, sha256: str, path: Path) -> list[Any]:
    return parse_examples(ctx.blobs.fetch_to(sha256, path).read_bytes())


def _tar(folder: Path, target: Path) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=f"model/{path.relative_to(folder).as_posix()}")
    target.write_bytes(buffer.getvalue())
    return target


def _base_deployment(
    deployments: DeploymentService, registry: ModelRegistry, owner: Caller, base: LlmBase
) -> str:
    """A deployment the owner may use that serves the base version alone (the one named by
    the base's OpenAI id first); one is made for it if there is none."""
    named = base.model_id.replace(":", "-") if base.model_id.startswith("ft:") else base.model_id
    for row in sorted(deployments.all(), key=lambda r: (r.name != named, r.name)):
        spec = row.spec
        if spec.get("model") != base.model or spec.get("traffic") or spec.get("base"):
            continue
        try:
            deployments.check(owner, row.name, Permission.READ)
            version = registry.resolve(base.model, str(spec.get("version") or "latest"))
        except NotFound:
            continue
        if version.version == base.version:
            return row.name
    name = f"{base.model}-v{base.version}"[:128]
    deployments.create(owner, name, {"model": base.model, "version": str(base.version)})
    return name


def run_llm_finetune(ctx: JobContext) -> dict[str, Any]:
    """Fine-tune as the job's plan says; returns the job's result."""
    plan = ctx.plan(LlmFineTunePlan)
    settings = ctx.settings
    registry = ctx.registry
    hyper = plan.hyperparameters
    base = plan.base
    with scratch_dir(settings.tmp_dir, f"job-{ctx.job_id}-") as work:
        archive = ctx.blobs.fetch_to(base.sha256, work / "base.tar")
        folder = unpack_hf(archive, work / "base", max_bytes=settings.max_upload_bytes * 4)
        train = _examples(ctx, plan.training_sha256, work / "train.jsonl")
        valid = (
            _examples(ctx, plan.validation_sha256, work / "valid.jsonl")
            if plan.validation_sha256
            else []
        )
        config = FineTuneConfig(
            method=plan.method,
            n_epochs=hyper["n_epochs"],
            batch_size=hyper["batch_size"],
            learning_rate_multiplier=hyper["learning_rate_multiplier"],
            seed=plan.seed,
            lora_r=plan.lora.r,
            lora_alpha=plan.lora.alpha,
            lora_dropout=plan.lora.dropout,
            merge_lora=plan.lora.merge,
        )
        ctx.log(
            f"fine-tuning {base.model} v{base.version} ({plan.method}) on "
            f"{len(train)} examples, {len(valid)} for validation"
        )
        model, tokenizer = load_causal_lm(folder, device="auto")
        model.float()
        total = math.ceil(len(train) / config.batch_size) * config.n_epochs
        reporter = _Reporter(ctx, work, total, plan.fine_tuned_model)
        resume = load_checkpoint(ctx, work)
        if resume is not None:
            ctx.emit("resumed", {"step": ctx.checkpoint_step, "attempt": ctx.attempt})
            ctx.log(f"resuming from the checkpoint at step {ctx.checkpoint_step}")
        result = fine_tune(model, tokenizer, train, valid, config, reporter, resume=resume)
        if result.cancelled:
            raise JobCancelled
        adapter = plan.method == "lora" and not plan.lora.merge
        out = work / "out"
        result.model.save_pretrained(str(out))  # a peft model writes its adapter only
        if not adapter:
            tokenizer.save_pretrained(str(out))
        staged = stage_file(_tar(out, work / "model.tar"), settings.tmp_dir, 1 << 62)
        staged.filename = "model.tar"
        metrics = {
            "train_loss": result.train_loss,
            "valid_loss": result.valid_loss,
            "initial_valid_loss": result.initial_valid_loss,
        }
        owner = owner_caller(ctx)
        version = registry.push_version(
            owner,
            plan.output_model,
            staged,
            VersionMeta(
                format=LORA_FORMAT if adapter else "hf",
                metrics={k: v for k, v in metrics.items() if v is not None},
                params={
                    "openai_model_id": plan.fine_tuned_model,
                    "base": base.model_dump(mode="json"),
                    "method": plan.method,
                    "hyperparameters": hyper,
                    "lora": plan.lora.model_dump(mode="json") if plan.method == "lora" else None,
                    "training_file": plan.training_file,
                    "validation_file": plan.validation_file,
                    "history": result.history,
                    "steps": result.steps,
                    "trained_tokens": result.trained_tokens,
                },
                description=f"fine-tuned from {base.model} v{base.version} by job {ctx.job_id}",
                parent_version=base.version,
                parent_model=base.model,
                dataset_id=plan.training_dataset_id,
                job_id=ctx.job_id,
            ),
        )
    deployments = DeploymentService(ctx.db, registry)
    spec: dict[str, Any] = {"model": plan.output_model, "version": "latest"}
    if adapter:
        spec["base"] = _base_deployment(deployments, registry, owner, base)
    try:
        deployments.create(owner, plan.deployment, spec)
    except Conflict:
        deployments.update(owner, plan.deployment, {"version": "latest"})
    return {
        "model": plan.output_model,
        "version": version.version,
        "metrics": metrics,
        "fine_tuned_model": plan.fine_tuned_model,
        "deployment": plan.deployment,
        "trained_tokens": result.trained_tokens,
        "steps": result.steps,
    }
