"""One reporter for every kind of job: what a training loop reports becomes the job's events,
progress, metrics and checkpoints, and the job's cancel request stops the loop.

:class:`JobReporter` is both the training loop's callbacks
(:class:`modelyard.training.callbacks.TrainCallbacks`: train jobs, each DDP or parameter-server
rank 0) and the compression fit loop's hooks (:class:`modelyard.compression.fit.FitHooks`:
finetune, prune with fine-tuning, distill). A loop that is only part of a job reports its
progress within ``span``::

    reporter = JobReporter(ctx, work, span=(0.2, 0.8))
    compress(method, source, data, child_dir, reporter)

A checkpoint is stored (serialized, put in the blob store, recorded on the job) by a
background thread while the loop trains on, one at a time; leaving the reporter's ``with``
block waits for the last one, so a run that ends or is cancelled has its checkpoint::

    with JobReporter(ctx, work) as reporter:
        result = train(spec, config, x, y, callbacks=reporter)
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from modelyard.jobs.checkpoints import store_checkpoint
from modelyard.jobs.context import JobContext


class JobReporter:
    """A job's training-loop callbacks: events, progress, checkpoints, cancellation."""

    def __init__(self, ctx: JobContext, work: Path, *, span: tuple[float, float] = (0.0, 1.0)):
        self._ctx = ctx
        self._work = work
        self._start, self._end = span
        self._storing: threading.Thread | None = None
        self._failure: BaseException | None = None

    def __enter__(self) -> JobReporter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close(raise_failure=error is None)

    def close(self, *, raise_failure: bool = True) -> None:
        """Wait for the checkpoint being stored; raise what storing it raised."""
        self._wait()
        failure, self._failure = self._failure, None
        if failure is not None and raise_failure:
            raise failure

    def on_event(self, event: dict[str, Any]) -> None:
        """Record a loop's event (``step``, ``epoch``, ``early_stop``…); an epoch also moves
        the job's progress, ETA and metrics."""
        kind = str(event.get("type", "event"))
        data = {k: v for k, v in event.items() if k != "type"}
        self._ctx.emit(kind, data)
        if kind != "epoch":
            return
        share = float(event.get("progress", 0.0))
        self._ctx.update(
            progress=self._start + (self._end - self._start) * share,
            eta_s=event.get("eta_s") if self._end == 1.0 else None,
            metrics={
                "train": event.get("train", {}),
                "val": event.get("val", {}),
                "epoch": event.get("epoch"),
                # A private run's ε spent so far.
                **({"privacy": event["privacy"]} if "privacy" in event else {}),
            },
        )

    def on_epoch(self, event: dict[str, Any]) -> None:
        """Record an epoch of the compression fit loop (its loss, progress and ε spent)."""
        self.on_event(
            {
                "type": "epoch",
                "epoch": event.get("epoch"),
                "epochs": event.get("epochs"),
                "train": {"loss": event.get("loss")},
                "val": {},
                "progress": float(event.get("progress", 0.0)),
                **({"privacy": event["privacy"]} if "privacy" in event else {}),
            }
        )

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Store ``state`` (whose tensors are private copies) as the job's checkpoint in the
        background, after the one before it."""
        self._wait()
        if self._failure is not None:
            self.close()
        self._storing = threading.Thread(
            target=self._store, args=(state,), name="job-checkpoint", daemon=True
        )
        self._storing.start()

    def _store(self, state: dict[str, Any]) -> None:
        # Ranks of an attempt that was re-queued (its coordinator lost with a node) may still
        # run for a moment; their checkpoints are refused and leave the successor's alone.
        step = int(state.get("global_step", 0))
        try:
            if store_checkpoint(self._ctx, self._work, state, step=step):
                self._ctx.emit("checkpoint", {"step": step, "epoch": state.get("epoch")})
        except BaseException as exc:  # raised in the job's own thread by close()
            self._failure = exc

    def _wait(self) -> None:
        if self._storing is not None:
            self._storing.join()
            self._storing = None

    def should_stop(self) -> bool:
        """True once the job is cancelled or handed to another attempt."""
        return self._ctx.should_stop()
