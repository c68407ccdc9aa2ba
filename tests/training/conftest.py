"""Real data from scikit-learn (bundled, offline) and a one-thread torch for small models."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes, load_digits, load_iris
from sklearn.model_selection import train_test_split


@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread() -> Iterator[None]:
    # Tiny models run fastest on one thread, and the test machines are shared.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def _split(x: np.ndarray, y: np.ndarray, *, stratify: bool, seed: int = 0) -> Split:
    parts = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y if stratify else None
    )
    return Split(*parts)


@pytest.fixture(scope="session")
def digits() -> Split:
    """8x8 digit images as 64 pixel values (0..16), ten classes, 20% held out."""
    x, y = load_digits(return_X_y=True)
    return _split(x.astype(np.float32), y, stratify=True)


@pytest.fixture(scope="session")
def iris() -> Split:
    x, y = load_iris(return_X_y=True)
    return _split(x.astype(np.float32), y, stratify=True)


@pytest.fixture(scope="session")
def diabetes() -> Split:
    x, y = load_diabetes(return_X_y=True)
    return _split(x.astype(np.float32), y.astype(np.float32), stratify=False, seed=1)
