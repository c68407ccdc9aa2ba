"""Data sets and the registry through a real server, over every storage combination."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.data import digits_npz, iris_csv, mlp_safetensors
from tests.support.moto import FAKE_CREDENTIALS, moto_server, s3_client
from tests.support.server import LiveServer, live_server

MASTER_KEY = "11" * 32
MARKER = "zebra_unicorn_marker"

COMBOS = [
    pytest.param(("sqlite", "local", False), id="sqlite-local"),
    pytest.param(("sqlite", "local", True), id="sqlite-local-encrypted"),
    pytest.param(("sqlite", "s3", False), id="sqlite-s3"),
    pytest.param(("postgres", "local", False), id="postgres-local"),
    pytest.param(("postgres", "s3", True), id="postgres-s3-encrypted"),
]


@pytest.fixture
def combo_server(
    request: pytest.FixtureRequest, make_settings: Callable[..., object], tmp_path: Path
) -> Iterator[tuple[LiveServer, str | None]]:
    db, store, encrypted = request.param
    overrides: dict[str, object] = {}
    if db == "postgres":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    if encrypted:
        overrides["encryption_key"] = MASTER_KEY
    with moto_server() as endpoint:
        if store == "s3":
            overrides.update(
                blob_store="s3",
                s3_endpoint_url=endpoint,
                s3_bucket=f"b-{tmp_path.name[-20:].lower().replace('_', '-')}",
                s3_access_key_id=FAKE_CREDENTIALS["aws_access_key_id"],
                s3_secret_access_key=FAKE_CREDENTIALS["aws_secret_access_key"],
            )
        with live_server(make_settings(**overrides)) as srv:  # type: ignore[arg-type]
            yield srv, endpoint if store == "s3" else None


def _stored_bytes(server: LiveServer, endpoint: str | None) -> list[bytes]:
    settings = server.platform.settings
    if endpoint is None:
        root = settings.data_dir / "blobs"
        return [p.read_bytes() for p in root.rglob("*") if p.is_file()]
    s3 = s3_client(endpoint)
    listing = s3.list_objects_v2(Bucket=settings.s3_bucket).get("Contents", [])
    return [s3.get_object(Bucket=settings.s3_bucket, Key=o["Key"])["Body"].read() for o in listing]


@pytest.mark.parametrize("combo_server", COMBOS, indirect=True)
def test_dataset_and_registry_round_trip(
    combo_server: tuple[LiveServer, str | None], tmp_path: Path
) -> None:
    server, endpoint = combo_server
    encrypted = server.platform.settings.encryption_key is not None
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=60) as api:
        # A CSV data set, streamed as the raw body.
        csv = iris_csv(tmp_path / "iris.csv", marker=MARKER)
        reply = api.post(
            "/api/v1/datasets",
            params={"name": "iris", "label": "species", "filename": "iris.csv"},
            content=csv.read_bytes(),
        )
        assert reply.status_code == 201, reply.text
        ds = reply.json()
        assert (ds["format"], ds["kind"], ds["num_rows"], ds["label"]) == (
            "csv",
            "table",
            150,
            "species",
        )
        assert ds["sha256"] == hashlib.sha256(csv.read_bytes()).hexdigest()
        assert [c["name"] for c in ds["schema"]["columns"]][-1] == "species"
        assert api.get("/api/v1/datasets/iris").json()["id"] == ds["id"]
        assert api.get("/api/v1/datasets").json()["total"] == 1
        assert api.get("/api/v1/datasets/iris/download").content == csv.read_bytes()

        # An NPZ data set, through multipart.
        npz = digits_npz(tmp_path / "digits.npz")
        with npz.open("rb") as f:
            reply = api.post(
                "/api/v1/datasets",
                params={"name": "digits", "label": "y"},
                files={"file": ("digits.npz", f)},
            )
        assert reply.status_code == 201, reply.text
        assert reply.json()["schema"]["arrays"]["x"]["shape"] == [1797, 64]

        # A model version: spec + safetensors.
        assert api.post("/api/v1/models", json={"name": "iris-mlp"}).status_code == 201
        weights = mlp_safetensors(tmp_path / "m.safetensors")
        reply = api.post(
            "/api/v1/models/iris-mlp/versions",
            params={"filename": "m.safetensors", "metrics": '{"accuracy": 0.9}'},
            content=weights.read_bytes(),
        )
        assert reply.status_code == 201, reply.text
        v1 = reply.json()
        assert (v1["version"], v1["format"]) == (1, "safetensors")
        assert v1["spec"]["arch"] == "mlp" and v1["metrics"] == {"accuracy": 0.9}
        assert v1["signature"]["inputs"][0]["shape"] == [-1, 4]
        reply = api.post(
            "/api/v1/models/iris-mlp/versions",
            params={"filename": "m.safetensors", "parent": 1},
            content=weights.read_bytes(),
        )
        assert reply.json()["version"] == 2 and reply.json()["lineage"]["parent_version"] == 1

        # Aliases: set, move with one call, resolve.
        assert (
            api.put("/api/v1/models/iris-mlp/aliases/production", json={"version": 1}).status_code
            == 200
        )
        assert api.get("/api/v1/models/iris-mlp/versions/production").json()["version"] == 1
        assert (
            api.put("/api/v1/models/iris-mlp/aliases/production", json={"version": 2}).status_code
            == 200
        )
        assert api.get("/api/v1/models/iris-mlp/versions/production").json()["version"] == 2
        assert api.get("/api/v1/models/iris-mlp").json()["aliases"] == {"production": 2}
        assert api.get("/api/v1/models/iris-mlp").json()["latest_version"] == 2
        assert (
            api.put("/api/v1/models/iris-mlp/aliases/production", json={"version": 9}).status_code
            == 404
        )

        pulled = api.get("/api/v1/models/iris-mlp/versions/1/download")
        assert pulled.content == weights.read_bytes()
        assert pulled.headers["x-modelyard-sha256"] == v1["sha256"]

        if encrypted:
            for blob in _stored_bytes(server, endpoint):
                assert MARKER.encode() not in blob
                assert b"modelyard.spec" not in blob
        else:
            assert any(MARKER.encode() in blob for blob in _stored_bytes(server, endpoint))

        # Deleting removes what only it referenced.
        before = len(_stored_bytes(server, endpoint))
        assert api.delete("/api/v1/datasets/iris").status_code == 204
        assert api.get("/api/v1/datasets/iris").status_code == 404
        assert len(_stored_bytes(server, endpoint)) < before


def test_idx_pair_upload_and_download(
    server: LiveServer, admin: httpx.Client, tmp_path: Path
) -> None:
    import gzip
    import struct

    import numpy as np

    images = np.arange(5 * 4 * 4, dtype=np.uint8).reshape(5, 4, 4)
    labels = np.array([0, 1, 2, 3, 4], dtype=np.uint8)
    img = gzip.compress(struct.pack(">IIII", 0x803, 5, 4, 4) + images.tobytes())
    lab = struct.pack(">II", 0x801, 5) + labels.tobytes()
    reply = admin.post(
        "/api/v1/datasets",
        params={"name": "tiny-mnist"},
        files={
            "images": ("train-images-idx3-ubyte.gz", img),
            "labels": ("train-labels-idx1-ubyte", lab),
        },
    )
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["format"] == "idx" and body["num_rows"] == 5
    assert body["schema"]["arrays"]["x"]["shape"] == [5, 4, 4]
    archive = admin.get("/api/v1/datasets/tiny-mnist/download")
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        names = sorted(tar.getnames())
        assert names == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte"]
        member = tar.extractfile("train-labels-idx1-ubyte")
        assert member is not None and member.read() == lab
