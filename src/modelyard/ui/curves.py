"""A job's training curves: its step and epoch events, bounded for a page.

The browser draws them (``static/app.js``): ``loss`` from step events, ``train <metric>`` and
``val <metric>`` from epoch events, all against the step.
"""

from __future__ import annotations

from typing import Any

from modelyard.auth.access import Caller
from modelyard.platform import Platform

CURVE_TYPES = ("step", "epoch")
MAX_EVENTS = 20_000
MAX_STEP_POINTS = 2_000
_BATCH = 500


def compact(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """What a chart needs of one event."""
    kept: dict[str, Any] = {"type": event_type}
    kept.update((k, data[k]) for k in ("step", "epoch", "loss", "train", "val") if k in data)
    return kept


def curve_events(platform: Platform, caller: Caller, job_id: str) -> list[dict[str, Any]]:
    """The job's step and epoch events (read through the job service's access check), with
    step events thinned evenly to at most ``MAX_STEP_POINTS``."""
    steps: list[dict[str, Any]] = []
    epochs: list[dict[str, Any]] = []
    seq = 0
    read = 0
    while read < MAX_EVENTS:
        batch = platform.jobs.events(caller, job_id, seq, _BATCH)
        if not batch:
            break
        for event in batch:
            if event.type == "step":
                steps.append(compact(event.type, event.data))
            elif event.type == "epoch":
                epochs.append(compact(event.type, event.data))
        seq = batch[-1].seq
        read += len(batch)
    if len(steps) > MAX_STEP_POINTS:
        stride = -(-len(steps) // MAX_STEP_POINTS)
        steps = steps[::stride] + ([steps[-1]] if (len(steps) - 1) % stride else [])
    return sorted(steps + epochs, key=lambda e: (e.get("step") or 0, e["type"] == "epoch"))
