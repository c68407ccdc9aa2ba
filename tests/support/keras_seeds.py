"""The seeds' Keras model, trained by Keras itself, and its logits twin.

The seeds' model is Dense 128-128-10 with a softmax output, trained on scikit-learn's digits
scaled to [0, 1]. Its twin has the same weights and no softmax: it returns the logits the
softmax model normalises, so anything measured or learnt from the two must agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SeedsModels:
    """Both models on disk, Keras's own loss on the held-out rows, and the split."""

    softmax_path: Path
    logits_path: Path
    keras_loss: float
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits_unit_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits scaled to [0, 1], split 3:1 (stratified, fixed seed): x_train, x_test, y…"""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    return x_train, x_test, y_train, y_test


def seeds_model(keras: Any, activation: str | None) -> Any:
    """The seeds' architecture: Dense 128-128-10 on 64 inputs, ``activation`` at the end."""
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation=activation),
        ]
    )


def keras_loss(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Keras's own ``evaluate`` of ``model`` with the seeds' loss."""
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return float(model.evaluate(x, y, verbose=0, return_dict=True)["loss"])


def train_seeds_models(folder: Path, epochs: int = 3) -> SeedsModels:
    """Train the seeds' model with Keras, save it and its twin under ``folder``."""
    from modelyard.registry.keras import keras_module

    keras = keras_module()
    x_train, x_test, y_train, y_test = digits_unit_split()
    keras.utils.set_random_seed(0)
    model = seeds_model(keras, "softmax")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    twin = seeds_model(keras, None)
    twin.set_weights(model.get_weights())
    model.save(str(folder / "softmax.keras"))
    twin.save(str(folder / "logits.keras"))
    return SeedsModels(
        folder / "softmax.keras",
        folder / "logits.keras",
        keras_loss(model, x_test, y_test),
        x_train,
        y_train,
        x_test,
        y_test,
    )
