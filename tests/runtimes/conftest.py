"""Fixtures: the digits versions of :mod:`tests.runtimes.models`, one torch thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from tests.runtimes.models import CNN_SPEC, MLP_SPEC, Version, make_version


@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread() -> Iterator[None]:
    # Tiny models run fastest on one thread, and the test machines are shared.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> Version:
    """Digits MLP: 64 raw pixel values in, ten logits out."""
    return make_version(MLP_SPEC, tmp_path_factory.mktemp("mlp"))


@pytest.fixture(scope="session")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> Version:
    """Digits CNN on [1, 8, 8] images, with batch norm; raw rows of 64 pixels fit too."""
    return make_version(CNN_SPEC, tmp_path_factory.mktemp("cnn"))


@pytest.fixture
def version(request: pytest.FixtureRequest) -> Version:
    """The MLP or CNN version, by the test's ``arch`` parameter."""
    fixture: Version = request.getfixturevalue(request.param)
    return fixture
