"""Bad uploads are refused with a clear 4xx, and nothing is stored."""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.data import digits_npz, spec_json
from tests.support.server import LiveServer, live_server


@pytest.fixture
def small_server(make_settings: Callable[..., object]) -> Iterator[LiveServer]:
    settings = make_settings(max_upload_bytes=200_000, max_dataset_bytes=1_000_000)
    with live_server(settings) as srv:  # type: ignore[arg-type]
        yield srv


@pytest.fixture
def api(small_server: LiveServer) -> Iterator[httpx.Client]:
    auth = {"Authorization": f"Bearer {small_server.admin_key}"}
    with httpx.Client(base_url=small_server.url, headers=auth, timeout=60) as client:
        assert client.post("/api/v1/models", json={"name": "m"}).status_code == 201
        yield client


def _nothing_stored(server: LiveServer, api: httpx.Client) -> None:
    data_dir = server.platform.settings.data_dir
    blobs = [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]
    leftovers = [p for p in (data_dir / "tmp").rglob("*") if p.is_file()]
    assert blobs == [] and leftovers == []
    assert api.get("/api/v1/datasets").json()["total"] == 0
    assert api.get("/api/v1/models/m/versions").json()["total"] == 0


def _tar_with(name: str, payload: bytes = b"x") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def _truncated_npz(tmp: Path) -> bytes:
    return digits_npz(tmp / "d.npz").read_bytes()[:5000]


def _npz_bomb(_tmp: Path) -> bytes:
    """A compressed NPZ of a few KB whose arrays expand to 4 MB."""
    import numpy as np

    buf = io.BytesIO()
    np.savez_compressed(buf, x=np.zeros((2000, 512), np.float32), y=np.zeros(2000, np.int64))
    return buf.getvalue()


DATASET_CASES = [
    ("npz-bomb", {"filename": "b.npz", "label": "y"}, _npz_bomb, 413, "expands to"),
    ("ragged-csv", {"filename": "r.csv"}, lambda _t: b"a,b,c\n1,2,3\n4,5\n", 422, "line 3"),
    ("truncated-npz", {"filename": "t.npz"}, _truncated_npz, 422, "npz"),
    (
        "bad-idx-magic",
        {"format": "idx"},
        lambda _t: struct.pack(">II", 0xDEAD, 1) + b"\x00",
        422,
        "magic",
    ),
    ("unknown-format", {"filename": "x.bin"}, lambda _t: b"\x01\x02garbage", 415, "format"),
    ("bad-jsonl", {"filename": "x.jsonl"}, lambda _t: b'{"a": 1}\n{"a": \n', 422, "line 2"),
    ("too-big", {"filename": "big.csv"}, lambda _t: b"a\n" + b"1\n" * 150_000, 413, "limit"),
]


@pytest.mark.parametrize(
    ("case", "params", "make", "status", "word"), DATASET_CASES, ids=[c[0] for c in DATASET_CASES]
)
def test_bad_dataset_upload_is_refused(
    small_server: LiveServer,
    api: httpx.Client,
    tmp_path: Path,
    case: str,
    params: dict[str, str],
    make: Callable[[Path], bytes],
    status: int,
    word: str,
) -> None:
    reply = api.post("/api/v1/datasets", params={"name": case, **params}, content=make(tmp_path))
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert word.lower() in reply.json()["detail"].lower()
    _nothing_stored(small_server, api)


ARTIFACT_CASES = [
    ("pickle-pt", {"filename": "model.pt"}, pickle.dumps({"w": [1, 2, 3]}), 422, "pickle"),
    ("tar-traversal", {"filename": "m.tar"}, _tar_with("../evil.txt"), 422, "evil"),
    ("tar-absolute", {"filename": "m.tar"}, _tar_with("/etc/evil"), 422, "evil"),
    ("unknown-format", {"filename": "m.xyz"}, b"\x00\x01\x02\x03" * 10, 415, "format"),
    ("bad-onnx", {"filename": "m.onnx"}, b"\x08\x07garbage-not-onnx" * 4, 422, "onnx"),
    (
        "safetensors-no-spec",
        {"filename": "m.safetensors"},
        struct.pack("<Q", 2) + b"{}",
        422,
        "spec",
    ),
]


@pytest.mark.parametrize(
    ("case", "params", "body", "status", "word"), ARTIFACT_CASES, ids=[c[0] for c in ARTIFACT_CASES]
)
def test_bad_artifact_is_refused(
    small_server: LiveServer,
    api: httpx.Client,
    case: str,
    params: dict[str, str],
    body: bytes,
    status: int,
    word: str,
) -> None:
    reply = api.post("/api/v1/models/m/versions", params=params, content=body)
    assert reply.status_code == status, (case, reply.text)
    assert word.lower() in reply.json()["detail"].lower(), reply.json()["detail"]
    _nothing_stored(small_server, api)


def test_weights_that_do_not_fit_the_spec_are_refused(
    small_server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    from tests.support.data import mlp_safetensors

    weights = mlp_safetensors(tmp_path / "m.safetensors").read_bytes()
    wrong = spec_json({"arch": "mlp", "input_shape": [4], "hidden": [32], "num_outputs": 3})
    reply = api.post(
        "/api/v1/models/m/versions",
        params={"filename": "m.safetensors", "spec": wrong},
        content=weights,
    )
    assert reply.status_code == 422
    assert "shape" in reply.json()["detail"].lower()
    bad_spec = spec_json({"arch": "mlp", "input_shape": [4], "hidden": [-1], "num_outputs": 3})
    reply = api.post(
        "/api/v1/models/m/versions",
        params={"filename": "m.safetensors", "spec": bad_spec},
        content=weights,
    )
    assert reply.status_code == 422 and "hidden" in reply.json()["detail"]
    _nothing_stored(small_server, api)


def test_unknown_model_and_bad_names(api: httpx.Client) -> None:
    # A first push registers the model, but not with an artifact that is refused.
    assert api.post("/api/v1/models/nope/versions", content=b"x").status_code in (415, 422)
    assert api.get("/api/v1/models/nope").status_code == 404
    reply = api.post("/api/v1/models", json={"name": "../etc"})
    assert reply.status_code == 422 and "name" in reply.json()["detail"]
    assert api.post("/api/v1/models", json={"name": "m"}).status_code == 409
