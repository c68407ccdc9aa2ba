"""Learning rate as a pure function of the step, in the manner of nanoGPT's ``get_lr``.

Being a function of the global step alone, the schedule needs no state of its own: a
resumed run recomputes the same rate from the step it resumes at.
"""

from __future__ import annotations

import math

from modelyard.training.config import ScheduleConfig


def lr_at(
    schedule: ScheduleConfig, base_lr: float, step: int, steps_per_epoch: int, total_steps: int
) -> float:
    """The learning rate for optimizer step ``step`` (0-based) of ``total_steps``.

    >>> lr_at(ScheduleConfig(name="cosine", warmup_steps=10), 1.0, 5, 10, 110)
    0.6
    """
    warmup = schedule.warmup_steps
    if step < warmup:
        return base_lr * (step + 1) / (warmup + 1)
    if schedule.name == "step":
        epoch = step // max(steps_per_epoch, 1)
        return base_lr * schedule.gamma ** (epoch // schedule.step_size)
    if schedule.name in ("cosine", "linear"):
        progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
        if schedule.name == "cosine":
            weight = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            weight = 1.0 - progress
        return schedule.min_lr + weight * (base_lr - schedule.min_lr)
    return base_lr
