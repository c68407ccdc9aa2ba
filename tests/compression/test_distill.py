"""Distillation: the loss, and a student a quarter of the teacher's size."""

from __future__ import annotations

from pathlib import Path

import torch

from modelyard.compression import DistillOptions, distillation_loss, parse_model
from modelyard.compression.distill import distill
from tests.compression.conftest import Trained, accuracy


def test_the_distillation_loss_is_zero_only_for_matching_outputs() -> None:
    logits = torch.randn(4, 10)
    assert float(distillation_loss(logits, logits, 4.0)) < 1e-6
    assert float(distillation_loss(logits, logits.flip(1), 4.0)) > 0.01
    # Softer targets at a higher temperature, scaled by T² to keep gradients comparable.
    assert float(distillation_loss(logits, 3 * logits, 1.0)) > 0


def test_a_quarter_size_student_keeps_97_percent_of_the_teachers_accuracy(
    mlp: Trained, tmp_path: Path
) -> None:
    options = parse_model(
        DistillOptions,
        {
            "temperature": 4.0,
            "alpha": 0.7,
            "fit": {"dataset": "digits", "epochs": 30, "optimizer": {"name": "adam", "lr": 0.005}},
        },
        "",
    )
    teacher = mlp.fresh()
    student_spec = {"arch": "mlp", "input_shape": [64], "hidden": [32], "num_outputs": 10}
    child = distill(teacher, student_spec, mlp.data, options, tmp_path)
    teacher_params = sum(p.numel() for p in teacher.parameters())
    student_params = sum(p.numel() for p in child.module.parameters())
    assert student_params * 4 <= teacher_params
    assert accuracy(child.module, mlp.data) >= 0.97 * accuracy(teacher, mlp.data)
    assert child.spec == {**student_spec, "activation": "relu", "dropout": 0.0, "task": None}
