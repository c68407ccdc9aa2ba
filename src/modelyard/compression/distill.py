"""Knowledge distillation: a smaller catalog student trained on a teacher's outputs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from modelyard.compression.apply import Child, Data, catalog_child
from modelyard.compression.fit import FitHooks, Teacher, fit
from modelyard.compression.methods import DistillOptions
from modelyard.errors import InvalidInput
from modelyard.runtimes.outputs import OutputKind
from modelyard.training.rng import isolated_rng, seed_everything


def distill(
    teacher: nn.Module,
    student_spec: Mapping[str, Any],
    data: Data,
    options: DistillOptions,
    work: Path,
    hooks: FitHooks | None = None,
    *,
    teacher_outputs: OutputKind = "logits",
) -> Child:
    """Train a fresh ``student_spec`` model with the distillation loss; the child is it.

    The student reads the same model-ready inputs as the teacher (``data``), so it keeps
    the teacher's preprocessing. ``teacher_outputs`` says what the teacher returns (its
    version's ``params["outputs"]``); the student, a catalog model, returns logits.
    """
    from modelyard.nn import build_model, parse_spec

    if data.x_fit is None or data.y_fit is None:
        raise InvalidInput("dataset: no training rows were loaded")
    spec = parse_spec(student_spec, where="student.spec")
    with isolated_rng():
        seed_everything(options.fit.seed)
        student = build_model(spec)
    history = fit(
        student,
        data.x_fit,
        data.y_fit,
        options.fit,
        data.objective.with_outputs("logits"),
        teacher=Teacher(teacher, options.temperature, options.alpha, teacher_outputs),
        hooks=hooks,
    )
    facts = {
        "fine_tune": history,
        "temperature": options.temperature,
        "alpha": options.alpha,
    }
    return catalog_child(student, spec.model_dump(mode="json"), None, work, facts)
