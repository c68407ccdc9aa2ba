"""kill -9 at five points of an upload and of a job, then a restart: nothing is left in the
tmp dir, one collection pass leaves no blob that no record references, and the data set or
model version is absent or whole."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelyard.config import Settings
from modelyard.platform import Platform
from modelyard.storage.refs import referenced_digests
from tests.jobs.conftest import train_body, wait_event, wait_for
from tests.storage.crashes import TrackedServer, files_under, tracked_server
from tests.support.data import digits_npz
from tests.support.moto import FAKE_CREDENTIALS, moto_server, s3_client
from tests.support.server import ADMIN_KEY

KEY = "3c" * 32
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
MIB = 1024 * 1024
BIG_ROWS = 400_000  # about 100 MiB of float32 features: each step of its intake is visible


@pytest.fixture
def big_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.npz"
    rng = np.random.default_rng(7)
    x = rng.standard_normal((BIG_ROWS, 64), dtype=np.float32)
    np.savez(path, x=x, y=rng.integers(0, 10, BIG_ROWS))
    return path


@pytest.fixture
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Server settings: encryption on; blobs on local disk or in a fresh S3 bucket."""
    values = {
        "MODELYARD_ENCRYPTION_KEY": KEY,
        "MODELYARD_EXECUTOR_SLOTS": "1",
        "MODELYARD_JOB_HEARTBEAT_TIMEOUT_S": "5",
    }
    if getattr(request, "param", "local") == "local":
        yield values
        return
    with moto_server() as endpoint:
        yield {
            **values,
            "MODELYARD_BLOB_STORE": "s3",
            "MODELYARD_S3_ENDPOINT_URL": endpoint,
            "MODELYARD_S3_BUCKET": f"crash-{tmp_path.name[-20:].lower().replace('_', '-')}",
            "MODELYARD_S3_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
            "MODELYARD_S3_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
        }


def _settings(data_dir: Path, env: dict[str, str]) -> Settings:
    fields = {k.removeprefix("MODELYARD_").lower(): v for k, v in env.items()}
    return Settings(data_dir=data_dir, collect_grace_s=0, **fields)  # type: ignore[arg-type]


def wait_until(check: Callable[[], bool], what: str, bound_s: float = 120) -> None:
    """Poll ``check`` closely until it holds (a bound, not a timing assertion)."""
    deadline = time.monotonic() + bound_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {what}")
        time.sleep(0.002)


def _in_server_dir(srv: TrackedServer, data_dir: Path, pattern: str) -> list[Path]:
    """Files matching ``pattern`` in the server process's own working folder."""
    return [
        p for folder in (data_dir / "tmp").glob(f"proc-*-{srv.pid}-*") for p in folder.glob(pattern)
    ]


@contextlib.contextmanager
def upload_in_background(
    url: str, body: Iterator[bytes] | bytes, name: str = "big"
) -> Iterator[None]:
    """POST a data set from another thread; its outcome does not matter (the server dies)."""

    def post() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(
                url + "/api/v1/datasets",
                params={"name": name, "label": "y", "filename": "big.npz"},
                content=body,
                headers=AUTH,
                timeout=300,
            )

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(timeout=60)


def _check_after_restart(data_dir: Path, env: dict[str, str]) -> tuple[set[str], set[str]]:
    """No file in the tmp dir; then, after one collection pass, every stored blob is
    referenced and every referenced one stored. Returns (stored, referenced)."""
    assert files_under(data_dir / "tmp") == []
    platform = Platform.build(_settings(data_dir, env))
    try:
        platform.collect()
        stored = {blob.sha256 for blob in platform.blobs.list_blobs()}
        with platform.db.session() as session:
            referenced = referenced_digests(session)
    finally:
        platform.close()
    assert stored == referenced, "a blob nothing references survived, or a record lost one"
    return stored, referenced


def _dataset_absent_then_whole(api: httpx.Client, npz: Path) -> None:
    assert api.get("/api/v1/datasets/big").status_code == 404
    reply = api.post(
        "/api/v1/datasets",
        params={"name": "big", "label": "y", "filename": "big.npz"},
        content=npz.read_bytes(),
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["num_rows"] == BIG_ROWS
    pulled = hashlib.sha256(api.get("/api/v1/datasets/big/download").content).hexdigest()
    assert pulled == hashlib.sha256(npz.read_bytes()).hexdigest()


def _slow_body(data: bytes, sent: threading.Event, release: threading.Event) -> Iterator[bytes]:
    """The first half of ``data`` at once, the rest only after ``release``."""
    half = len(data) // 2
    for at in range(0, half, MIB):
        yield data[at : min(at + MIB, half)]
    sent.set()
    release.wait(120)
    yield data[half:]


def _blob_count(data_dir: Path, env: dict[str, str]) -> int:
    """How many blobs the store holds, counted around the store."""
    if "MODELYARD_S3_BUCKET" not in env:
        return len(files_under(data_dir / "blobs"))
    s3 = s3_client(env["MODELYARD_S3_ENDPOINT_URL"])
    return int(s3.list_objects_v2(Bucket=env["MODELYARD_S3_BUCKET"]).get("KeyCount", 0))


UPLOAD_POINTS = [
    pytest.param("body-streaming", "local", id="body-streaming"),
    pytest.param("after-staging", "local", id="after-staging"),
    pytest.param("blob-write", "local", id="blob-write"),
    pytest.param("blob-written", "local", id="blob-written"),
    pytest.param("blob-written", "s3", id="blob-written-s3"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("point", "env"), UPLOAD_POINTS, indirect=["env"])
def test_kill_9_during_an_upload(
    point: str, big_npz: Path, env: dict[str, str], tmp_path: Path
) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    data = big_npz.read_bytes()
    with tracked_server(data_dir, log, **env) as srv:
        if point == "body-streaming":
            sent, release = threading.Event(), threading.Event()
            with upload_in_background(srv.url, _slow_body(data, sent, release)):
                sent.wait(120)
                wait_until(
                    lambda: any(
                        p.stat().st_size >= len(data) // 4
                        for p in _in_server_dir(srv, data_dir, "upload-*.part")
                    ),
                    "a quarter of the body staged",
                )
                srv.crash()
                release.set()
        elif point == "blob-written":
            with upload_in_background(srv.url, data):
                wait_until(lambda: _blob_count(data_dir, env) > 0, "the first blob stored")
                srv.crash()
            # Stored, but not all of them, and not recorded.
            assert 0 < _blob_count(data_dir, env) < 3
        else:
            # The body has arrived when the intake's scratch folder appears; the first blob
            # is being written while its encrypted copy is in progress.
            pattern = "dataset-*" if point == "after-staging" else ".encrypting-*"
            with upload_in_background(srv.url, data):
                wait_until(lambda: bool(_in_server_dir(srv, data_dir, pattern)), pattern)
                srv.crash()
    assert files_under(data_dir / "tmp"), "the crash left no working files to sweep"

    with tracked_server(data_dir, log, **env) as srv:
        api = httpx.Client(base_url=srv.url, headers=AUTH, timeout=300)
        assert _check_after_restart(data_dir, env) == (set(), set())
        assert _blob_count(data_dir, env) == 0
        _dataset_absent_then_whole(api, big_npz)
        stored, _ = _check_after_restart(data_dir, env)
        assert len(stored) == _blob_count(data_dir, env) == 3  # the original, canonical x, y


@pytest.mark.slow
@pytest.mark.parametrize("point", ["training", "registration"])
def test_kill_9_during_a_job(point: str, env: dict[str, str], tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    # A wide model takes a while to save, stage, check and encrypt: registration is visible.
    hidden = [32] if point == "training" else [1024, 1024]
    body = train_body(
        model={"spec": {"arch": "mlp", "input_shape": [64], "hidden": hidden, "num_outputs": 10}},
        epochs=3 if point == "training" else 1,
        checkpoint_every_steps=5,
        output_model="digits-mlp",
    )
    with tracked_server(data_dir, log, **env) as srv:
        api = httpx.Client(base_url=srv.url, headers=AUTH, timeout=120)
        npz = digits_npz(tmp_path / "digits.npz")
        api.post(
            "/api/v1/datasets",
            params={"name": "digits", "label": "y", "filename": "d.npz"},
            content=npz.read_bytes(),
        ).raise_for_status()
        job = api.post("/api/v1/jobs", json=body).json()["id"]
        if point == "training":
            wait_event(api, job, "checkpoint")
        else:
            tmp = data_dir / "tmp"
            wait_until(lambda: bool(list(tmp.glob("proc-*/job-*/model.safetensors"))), "saving")
        srv.crash(with_workers=True)
    assert files_under(data_dir / "tmp"), "the crash left no working files to sweep"

    with tracked_server(data_dir, log, **env) as srv:
        api = httpx.Client(base_url=srv.url, headers=AUTH, timeout=120)
        done = wait_for(api, job)
        assert done["status"] == "succeeded" and done["attempt"] == 2, done
        stored, _ = _check_after_restart(data_dir, env)
        versions = api.get("/api/v1/models/digits-mlp/versions").json()["items"]
        assert versions and {v["sha256"] for v in versions} <= stored
        for version in versions:
            pulled = api.get(f"/api/v1/models/digits-mlp/versions/{version['version']}/download")
            assert hashlib.sha256(pulled.content).hexdigest() == version["sha256"]
        assert api.get("/api/v1/datasets/digits/download").content == npz.read_bytes()
