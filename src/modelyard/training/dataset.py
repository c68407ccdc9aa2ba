"""The run's data as tensors: validation split, fitted preprocessing, encoded labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from modelyard.errors import InvalidInput
from modelyard.nn.catalog import ArchSpec
from modelyard.training.config import TrainConfig
from modelyard.training.objective import Objective
from modelyard.training.preprocess import ArrayLike, Preprocessor
from modelyard.training.target_scaling import TargetScaler


def held_out_rows(rows: int, fraction: float) -> int:
    """How many of ``rows`` a validation ``fraction`` holds out (at least one if any)."""
    held_out = round(rows * fraction)
    return 1 if fraction > 0 and held_out == 0 else held_out


def split_rows(rows: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation row indices: a seeded, reproducible random split."""
    held_out = held_out_rows(rows, fraction)
    if held_out >= rows:
        raise InvalidInput(
            f"config.validation.fraction: {fraction} of {rows} rows leaves none for training"
        )
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(seed)).numpy()
    return np.sort(order[held_out:]), np.sort(order[:held_out])


@dataclass
class PreparedData:
    """Model-ready inputs and labels (labels in the data's units)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor | None
    y_val: torch.Tensor | None
    preprocessor: Preprocessor

    @property
    def scaler(self) -> TargetScaler | None:
        """The target standardization training uses, if any."""
        pre = self.preprocessor
        if pre.target_mean is None or pre.target_std is None:
            return None
        return TargetScaler(pre.target_mean, pre.target_std)


def prepare_data(
    spec: ArchSpec,
    config: TrainConfig,
    objective: Objective,
    x_train: ArrayLike,
    y_train: ArrayLike,
    x_val: ArrayLike | None,
    y_val: ArrayLike | None,
    recorded: dict[str, Any] | None = None,
) -> PreparedData:
    """Split (when no validation set is given), fit preprocessing on the training rows only,
    and apply it. ``recorded`` (a resumed run's transform) replaces the fitting."""
    train_rows: np.ndarray | None = None
    val_rows: np.ndarray | None = None
    if x_val is None and config.validation.fraction > 0:
        seed = config.validation.seed if config.validation.seed is not None else config.seed
        train_rows, val_rows = split_rows(len(x_train), config.validation.fraction, seed)
    if recorded is not None:
        pre = Preprocessor.from_dict(recorded)
    else:
        pre = Preprocessor.for_training(spec, config.preprocessing, objective)
        pre.fit(x_train, y_train, train_rows)
    x_out, y_out = pre.apply(x_train, train_rows), pre.encode_labels(y_train, train_rows)
    if val_rows is not None:
        return PreparedData(
            x_out, y_out, pre.apply(x_train, val_rows), pre.encode_labels(y_train, val_rows), pre
        )
    if x_val is not None and y_val is not None:
        return PreparedData(x_out, y_out, pre.apply(x_val), pre.encode_labels(y_val), pre)
    return PreparedData(x_out, y_out, None, None, pre)
