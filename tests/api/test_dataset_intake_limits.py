"""Data set uploads beyond the intake limits, through a live server: a 413 or 422 naming
the limit and its setting, nothing stored, no staged file left, no server path told."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.datasets.conftest import MiB, gzip_of
from tests.support.data import iris_csv
from tests.support.server import LiveServer, live_server


@pytest.fixture
def server(make_settings: Callable[..., object]) -> Iterator[LiveServer]:
    settings = make_settings(max_dataset_bytes=16 * MiB)
    with live_server(settings) as srv:  # type: ignore[arg-type]
        yield srv


@pytest.fixture
def api(server: LiveServer) -> Iterator[httpx.Client]:
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=120) as client:
        yield client


def _nothing_left(server: LiveServer, api: httpx.Client) -> None:
    data_dir = server.platform.settings.data_dir
    blobs = [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]
    staged = [p for p in (data_dir / "tmp").rglob("*") if p.is_file()]
    assert blobs == []
    assert staged == []
    assert api.get("/api/v1/datasets").json()["total"] == 0


def _npz_bomb(_tmp: Path) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=np.zeros((64, MiB), np.uint8))
    return buffer.getvalue()


CASES: list[tuple[str, dict[str, str], Callable[[Path], bytes], int, str]] = [
    (
        "bad-name",
        {"name": "../etc", "filename": "iris.csv"},
        lambda tmp: iris_csv(tmp / "iris.csv").read_bytes(),
        422,
        "data set name '../etc' is not a valid name",
    ),
    (
        "jsonl-gigabyte-line",
        {"name": "line", "filename": "line.jsonl.gz"},
        lambda _t: gzip_of((b'{"a": "', 1), (b"x", 1024 * MiB), (b'"}\n', 1)),
        413,
        f"JSONL line 1 is longer than {8 * MiB} bytes, the most this server accepts "
        "(MODELYARD_MAX_DATASET_LINE_BYTES)",
    ),
    (
        "csv-gzip-bomb",
        {"name": "rows", "filename": "rows.csv.gz"},
        lambda _t: gzip_of((b"a\n", 1), (b"1\n", 64 * MiB)),
        413,
        f"more than the {16 * MiB} this server accepts (MODELYARD_MAX_DATASET_BYTES)",
    ),
    (
        "npz-bomb",
        {"name": "zeros", "filename": "zeros.npz"},
        _npz_bomb,
        413,
        f"the NPZ archive expands to {64 * MiB} bytes",
    ),
    (
        "csv-100000-columns",
        {"name": "wide", "filename": "wide.csv"},
        lambda _t: (
            ",".join(f"c{i}" for i in range(100_000)) + "\n" + "0," * 99_999 + "0\n"
        ).encode(),
        413,
        "has more than 10000 columns, the most this server accepts (MODELYARD_MAX_DATASET_COLUMNS)",
    ),
    (
        "csv-unterminated-quote",
        {"name": "quote", "filename": "quote.csv"},
        lambda _t: b'a,b\n1,2\n3,"four\n5,6\n',
        422,
        "CSV line 3 opens a quoted field that is never closed",
    ),
    (
        "jsonl-200000-deep",
        {"name": "deep", "filename": "deep.jsonl"},
        lambda _t: b'{"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}\n",
        422,
        "JSONL line 1: values nest more than 64 deep, the most this server accepts "
        "(MODELYARD_MAX_DATASET_JSON_DEPTH)",
    ),
    (
        "unnamed-unknown-format",
        {"name": "mystery"},
        lambda _t: b"\x01\x02 nothing known",
        415,
        "cannot tell the format of the upload",
    ),
]


@pytest.mark.parametrize(
    ("case", "params", "make", "status", "says"), CASES, ids=[c[0] for c in CASES]
)
def test_refused_upload_leaves_nothing_and_names_the_limit(
    server: LiveServer,
    api: httpx.Client,
    tmp_path: Path,
    case: str,
    params: dict[str, str],
    make: Callable[[Path], bytes],
    status: int,
    says: str,
) -> None:
    reply = api.post("/api/v1/datasets", params=params, content=make(tmp_path))

    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    detail = reply.json()["detail"]
    assert says in detail
    for secret in (str(server.platform.settings.data_dir), "upload-", ".part"):
        assert secret not in detail
    _nothing_left(server, api)


def test_multipart_upload_with_a_bad_name_leaves_nothing(
    server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    csv = iris_csv(tmp_path / "iris.csv")
    with csv.open("rb") as f:
        reply = api.post(
            "/api/v1/datasets", params={"name": "-dash"}, files={"file": ("iris.csv", f)}
        )
    assert reply.status_code == 422, reply.text
    _nothing_left(server, api)


def test_a_refused_upload_leaves_its_name_free(
    server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    params = {"name": "iris", "filename": "iris.csv"}
    refused = api.post("/api/v1/datasets", params=params, content=b'a,b\n1,"2\n')
    assert refused.status_code == 422, refused.text

    reply = api.post(
        "/api/v1/datasets", params=params, content=iris_csv(tmp_path / "iris.csv").read_bytes()
    )

    assert reply.status_code == 201, reply.text
    assert reply.json()["num_rows"] == 150


def test_an_openai_file_with_a_line_over_the_limit_is_refused_unread(
    make_settings: Callable[..., object],
) -> None:
    settings = make_settings(max_dataset_line_bytes=4096)
    with live_server(settings) as srv:  # type: ignore[arg-type]
        auth = {"Authorization": f"Bearer {srv.admin_key}"}
        with httpx.Client(base_url=srv.url, headers=auth, timeout=120) as api:
            good = b'{"prompt": "a", "completion": "b"}\n'
            huge = b'{"prompt": "' + b"a" * 64 * 1024 + b'", "completion": "b"}\n'
            files = {"file": ("train.jsonl", good + huge, "application/jsonl")}
            reply = api.post("/v1/files", data={"purpose": "fine-tune"}, files=files)
            assert reply.status_code == 413, reply.text
            message = reply.json()["error"]["message"]
            assert "line 2" in message and "MODELYARD_MAX_DATASET_LINE_BYTES" in message
            _nothing_left(srv, api)
            files = {"file": ("train.jsonl", good * 3, "application/jsonl")}
            reply = api.post("/v1/files", data={"purpose": "fine-tune"}, files=files)
            assert reply.status_code == 200, reply.text
