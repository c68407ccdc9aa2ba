from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.storage.cases import MASTER_KEY, Case, LocalCase, S3Case
from tests.support.moto import moto_server


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """One moto S3 server for the session; each test case uses its own bucket."""
    with moto_server() as endpoint:
        yield endpoint


def _make_case(request: pytest.FixtureRequest, backend: str, base: Path, encrypted: bool) -> Case:
    key = MASTER_KEY if encrypted else None
    if backend == "s3":
        return S3Case(request.getfixturevalue("s3_endpoint"), base, key)
    return LocalCase(base, key)


@pytest.fixture(params=["local", "local-encrypted", "s3", "s3-encrypted"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    """Every backend, with encryption off and on."""
    backend, _, encrypted = request.param.partition("-")
    return _make_case(request, backend, tmp_path, bool(encrypted))


@pytest.fixture(params=["local", "s3"])
def encrypted_case(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    """Every backend with encryption on."""
    return _make_case(request, request.param, tmp_path, True)
