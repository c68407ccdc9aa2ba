"""A Keras model that ends in softmax is measured, fine-tuned and distilled on its
probabilities, not as if they were logits (see :mod:`tests.support.keras_seeds`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from modelyard.compression import (
    Data,
    DistillOptions,
    Source,
    compress,
    measure,
    objective_for,
    parse_method,
    parse_model,
)
from modelyard.compression.distill import distill
from modelyard.registry.keras import keras_module, load_keras_model, save_keras_model
from modelyard.runtimes.outputs import OutputKind
from tests.support.keras_seeds import SeedsModels, keras_loss, train_seeds_models

STUDENT = {"arch": "mlp", "input_shape": [64], "hidden": [32], "num_outputs": 10}


@dataclass
class Teachers:
    """The seeds' models and their digits as model-ready tensors."""

    seeds: SeedsModels
    data: Data


@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> Teachers:
    seeds = train_seeds_models(tmp_path_factory.mktemp("keras-seeds"))
    y_eval = torch.from_numpy(seeds.y_test)
    data = Data(
        torch.from_numpy(seeds.x_test),
        y_eval,
        objective_for(y_eval, 10),
        torch.from_numpy(seeds.x_train),
        torch.from_numpy(seeds.y_train),
    )
    return Teachers(seeds, data)


def keras_source(path: Path, outputs: OutputKind, work: Path) -> Source:
    return Source(
        "keras",
        path,
        None,
        {"outputs": outputs},
        None,
        load=lambda: load_keras_model(path, work),
        save=save_keras_model,
    )


def loss_of(module: torch.nn.Module, data: Data, outputs: OutputKind) -> dict[str, Any]:
    row = measure(module, None, data.x_eval, data.y_eval, data.objective.with_outputs(outputs))
    metrics: dict[str, Any] = row["metrics"]
    return metrics


def test_a_softmax_model_is_measured_as_keras_measures_it(
    teachers: Teachers, tmp_path: Path
) -> None:
    model = load_keras_model(teachers.seeds.softmax_path, tmp_path)
    twin = load_keras_model(teachers.seeds.logits_path, tmp_path)
    ours = loss_of(model, teachers.data, "probabilities")
    assert abs(ours["loss"] - teachers.seeds.keras_loss) < 1e-3
    assert ours == pytest.approx(loss_of(twin, teachers.data, "logits"), abs=1e-3)
    # Read as logits, the probabilities are softmaxed again: the loss the user saw.
    assert loss_of(model, teachers.data, "logits")["loss"] > teachers.seeds.keras_loss + 0.5


def _distill(teacher: torch.nn.Module, data: Data, outputs: OutputKind, work: Path) -> float:
    options = parse_model(
        DistillOptions,
        {
            "temperature": 4.0,
            "alpha": 0.7,
            "fit": {"dataset": "digits", "epochs": 20, "optimizer": {"name": "adam", "lr": 0.005}},
        },
        "",
    )
    work.mkdir()
    child = distill(teacher, STUDENT, data, options, work, teacher_outputs=outputs)
    loss: float = loss_of(child.module, data, "logits")["loss"]
    return loss


def test_a_softmax_teacher_distils_as_well_as_its_logits_twin(
    teachers: Teachers, tmp_path: Path
) -> None:
    data = teachers.data
    model = load_keras_model(teachers.seeds.softmax_path, tmp_path)
    twin = load_keras_model(teachers.seeds.logits_path, tmp_path)
    from_probabilities = _distill(model, data, "probabilities", tmp_path / "p")
    from_logits = _distill(twin, data, "logits", tmp_path / "l")
    softmaxed_twice = _distill(model, data, "logits", tmp_path / "twice")
    assert abs(from_probabilities - from_logits) < 1e-3
    assert softmaxed_twice > from_logits + 0.3


def test_fine_tuning_a_softmax_model_trains_on_its_probabilities(
    teachers: Teachers, tmp_path: Path
) -> None:
    method = parse_method(
        {"name": "finetune", "fit": {"dataset": "digits", "epochs": 3, "batch_size": 32}}
    )

    def fine_tune(outputs: OutputKind) -> Any:
        work = tmp_path / outputs
        work.mkdir()
        source = keras_source(teachers.seeds.softmax_path, outputs, work)
        return compress(method, source, teachers.data, work)

    child = fine_tune("probabilities")
    assert child.format == "keras"
    # A double softmax cannot bring the loss below -log(e / (e + 9)) ≈ 1.46.
    assert fine_tune("logits").facts["fine_tune"][-1]["loss"] > 1.4
    assert child.facts["fine_tune"][-1]["loss"] < teachers.seeds.keras_loss
    ours = loss_of(child.module, teachers.data, "probabilities")["loss"]
    saved = keras_module().saving.load_model(str(child.artifact), compile=False)
    assert abs(ours - keras_loss(saved, teachers.seeds.x_test, teachers.seeds.y_test)) < 1e-3
    assert ours < teachers.seeds.keras_loss
