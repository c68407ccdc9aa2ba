"""Learning-rate schedules are pure functions of the step."""

from __future__ import annotations

import itertools
import math

import pytest

from modelyard.training import ScheduleConfig, lr_at


def rates(schedule: ScheduleConfig, steps: int = 100, per_epoch: int = 10) -> list[float]:
    return [lr_at(schedule, 1.0, step, per_epoch, steps) for step in range(steps)]


def test_constant() -> None:
    assert set(rates(ScheduleConfig())) == {1.0}


def test_step_decays_every_step_size_epochs() -> None:
    values = rates(ScheduleConfig(name="step", step_size=3, gamma=0.5))
    assert values[29] == 1.0
    assert values[30] == 0.5
    assert values[60] == 0.25
    assert values[99] == 0.125


def test_cosine_runs_from_lr_to_min_lr() -> None:
    values = rates(ScheduleConfig(name="cosine", min_lr=0.1))
    assert values[0] == 1.0
    assert values[50] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert values[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_linear_decay() -> None:
    values = rates(ScheduleConfig(name="linear"))
    assert values[50] == pytest.approx(0.5)


def test_warmup_rises_linearly_then_hands_over() -> None:
    values = rates(ScheduleConfig(name="cosine", warmup_steps=9))
    assert values[:9] == pytest.approx([(i + 1) / 10 for i in range(9)])
    assert values[9] == 1.0
    assert values[10] < 1.0


def test_warmup_combines_with_constant() -> None:
    values = rates(ScheduleConfig(warmup_steps=4))
    assert values[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
