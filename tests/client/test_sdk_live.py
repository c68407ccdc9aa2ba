"""The SDK against a real server: the registry user story, sharing, errors and jobs."""

from __future__ import annotations

import gzip
import hashlib
import struct
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from modelyard.client import (
    APIError,
    AuthenticationError,
    Client,
    ConflictError,
    Grant,
    JobFailedError,
    JobTimeoutError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from tests.client.proxy import cutting_proxy
from tests.support.data import MLP_SPEC, iris_csv, mlp_safetensors
from tests.support.server import LiveServer, live_server

DIGITS_MLP = {"arch": "mlp", "input_shape": [64], "hidden": [32], "num_outputs": 10}


def idx_pair(folder: Path) -> tuple[Path, Path]:
    """Five 4x4 images (gzipped IDX) and their labels (plain IDX)."""
    images = np.arange(5 * 4 * 4, dtype=np.uint8).reshape(5, 4, 4)
    image_file = folder / "train-images-idx3-ubyte.gz"
    image_file.write_bytes(gzip.compress(struct.pack(">IIII", 0x803, 5, 4, 4) + images.tobytes()))
    label_file = folder / "train-labels-idx1-ubyte"
    label_file.write_bytes(struct.pack(">II", 0x801, 5) + bytes([0, 1, 2, 3, 4]))
    return image_file, label_file


def digits(client: Client, name: str = "digits") -> None:
    from sklearn.datasets import load_digits

    data = load_digits()
    client.datasets.push_arrays(
        name, x=data.data.astype(np.float32), y=data.target.astype(np.int64), label="y"
    )


def train_spec(**overrides: object) -> dict[str, object]:
    spec: dict[str, object] = {
        "type": "train",
        "model": {"spec": DIGITS_MLP},
        "dataset": "digits",
        "label": "y",
        "epochs": 3,
        "optimizer": {"name": "adam", "lr": 0.01},
        "validation": {"fraction": 0.2},
        "preprocessing": {"scale": 0.0625},
    }
    spec.update(overrides)
    return spec


# -- the registry, on SQLite and on PostgreSQL -------------------------------------------


@pytest.fixture
def any_db_server(make_settings: Callable[..., object], database_url: str) -> Iterator[LiveServer]:
    with live_server(make_settings(database_url=database_url)) as srv:  # type: ignore[arg-type]
        yield srv


def test_registry_round_trip(any_db_server: LiveServer, tmp_path: Path) -> None:
    with Client(any_db_server.url, any_db_server.admin_key) as admin:
        me = admin.whoami()
        assert me.principal.is_admin
        assert set(me.key.scopes) >= {"admin"}

        # A person and a key for her; she works with her own key from then on.
        alice = admin.principals.create("alice")
        assert (alice.name, alice.kind, alice.is_admin) == ("alice", "user", False)
        assert "alice" in [p.name for p in admin.principals.list()]
        created = admin.keys.create("laptop", ["read", "write", "keys"], principal="alice")
        assert created.key.startswith("my_")
        assert created.principal is not None and created.principal.name == "alice"

    with Client(any_db_server.url, created.key) as client:
        assert client.whoami().principal.name == "alice"
        assert [k.name for k in client.keys.list()] == ["laptop"]

        # Data sets: a CSV file, NumPy arrays, an IDX pair.
        csv = iris_csv(tmp_path / "iris.csv")
        iris = client.datasets.push("iris", csv, label="species", description="Fisher's iris")
        assert (iris.format, iris.kind, iris.num_rows, iris.label) == (
            "csv",
            "table",
            150,
            "species",
        )
        assert iris.sha256 == hashlib.sha256(csv.read_bytes()).hexdigest()
        assert iris.owner is not None and iris.owner.name == "alice"
        assert iris.schema["columns"][-1]["name"] == "species"

        xor = client.datasets.push_arrays(
            "xor",
            x=np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32),
            y=[0, 1, 1, 0],
            label="y",
        )
        assert (xor.format, xor.kind, xor.num_rows) == ("npz", "arrays", 4)
        assert xor.schema["arrays"]["x"] == {"dtype": "float32", "shape": [4, 2]}

        mnist = client.datasets.push("tiny-mnist", idx_pair(tmp_path))
        assert (mnist.format, mnist.num_rows) == ("idx", 5)
        assert mnist.schema["arrays"]["x"]["shape"] == [5, 4, 4]

        assert sorted(d.name for d in client.datasets.list()) == ["iris", "tiny-mnist", "xor"]
        assert client.datasets.get("iris").id == iris.id
        downloaded = client.datasets.download("iris", tmp_path / "back.csv")
        assert downloaded.read_bytes() == csv.read_bytes()
        archive = client.datasets.download("tiny-mnist", tmp_path / "mnist.tar")
        with tarfile.open(archive) as tar:
            assert sorted(tar.getnames()) == [
                "train-images-idx3-ubyte.gz",
                "train-labels-idx1-ubyte",
            ]

        # Models, versions, aliases.
        model = client.models.create("iris-mlp", task="classification", description="first")
        assert (model.name, model.latest_version, model.aliases) == ("iris-mlp", None, {})
        weights = mlp_safetensors(tmp_path / "model.safetensors")
        v1 = client.models.push("iris-mlp", weights, metrics={"accuracy": 0.9})
        assert (v1.version, v1.format, v1.metrics) == (1, "safetensors", {"accuracy": 0.9})
        # The spec travelled in the file's metadata.
        assert v1.spec is not None
        assert {k: v1.spec[k] for k in MLP_SPEC} == MLP_SPEC
        assert v1.signature is not None and v1.signature["inputs"][0]["shape"] == [-1, 4]
        assert v1.created_by is not None and v1.created_by.name == "alice"
        v2 = client.models.push("iris-mlp", weights, parent=1, description="again")
        assert (v2.version, v2.lineage.parent_version, v2.description) == (2, 1, "again")
        assert [v.version for v in client.models.versions("iris-mlp")] == [1, 2]

        assert client.models.set_alias("iris-mlp", "production", 1).version == 1
        assert client.models.version("iris-mlp", "production").version == 1
        client.models.set_alias("iris-mlp", "production", 2)
        assert client.models.aliases("iris-mlp") == {"production": 2}
        got = client.models.get("iris-mlp")
        assert (got.latest_version, got.aliases) == (2, {"production": 2})
        updated = client.models.update("iris-mlp", description="second")
        assert (updated.task, updated.description) == ("classification", "second")

        pulled = client.models.pull("iris-mlp", "production", tmp_path)
        assert pulled.parent == tmp_path
        assert pulled.read_bytes() == weights.read_bytes()
        assert hashlib.sha256(pulled.read_bytes()).hexdigest() == v2.sha256

        client.models.delete_alias("iris-mlp", "production")
        assert client.models.aliases("iris-mlp") == {}
        client.models.delete_version("iris-mlp", 1)
        assert [v.version for v in client.models.versions("iris-mlp")] == [2]
        client.datasets.delete("xor")
        with pytest.raises(NotFoundError):
            client.datasets.get("xor")

        # A revoked key is refused from then on.
        client.keys.revoke(created.id)
        with pytest.raises(AuthenticationError):
            client.whoami()


# -- sharing -----------------------------------------------------------------------------


def test_sharing_between_two_users(make_user: Callable[..., Client], tmp_path: Path) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    alice.datasets.push("iris", iris_csv(tmp_path / "iris.csv"), label="species")
    alice.models.create("iris-mlp")
    weights = mlp_safetensors(tmp_path / "model.safetensors")
    alice.models.push("iris-mlp", weights)

    # Private by default: to Bob the resources do not exist.
    with pytest.raises(NotFoundError):
        bob.datasets.get("iris")
    with pytest.raises(NotFoundError):
        bob.models.pull("iris-mlp", 1, tmp_path)
    assert bob.datasets.list() == []
    assert bob.models.list() == []

    acl = alice.datasets.set_acl("iris", grants=[Grant(principal="bob")])
    assert acl.grants == (Grant(principal="bob", permission="read"),)
    assert bob.datasets.get("iris").name == "iris"
    assert [d.name for d in bob.datasets.list()] == ["iris"]
    with pytest.raises(PermissionDeniedError, match="read but not change"):
        bob.datasets.delete("iris")
    # Only the owner says who may use it.
    with pytest.raises(PermissionDeniedError):
        bob.datasets.set_acl("iris", public=True)

    alice.models.set_acl("iris-mlp", grants=[{"principal": "bob", "permission": "read"}])
    bob_dir = tmp_path / "bob"
    bob_dir.mkdir()
    assert bob.models.pull("iris-mlp", 1, bob_dir).read_bytes() == weights.read_bytes()
    with pytest.raises(PermissionDeniedError):
        bob.models.push("iris-mlp", weights)
    alice.models.set_acl("iris-mlp", grants=[Grant(principal="bob", permission="write")])
    assert bob.models.push("iris-mlp", weights).version == 2
    assert alice.models.get_acl("iris-mlp").grants == (Grant(principal="bob", permission="write"),)

    # Public: every principal may read, nobody else may change.
    carol = make_user("carol")
    with pytest.raises(NotFoundError):
        carol.models.get("iris-mlp")
    assert alice.models.set_acl("iris-mlp", public=True).public
    assert carol.models.get("iris-mlp").public
    with pytest.raises(PermissionDeniedError):
        carol.models.delete("iris-mlp")

    # Taking the grant back hides it again.
    alice.datasets.set_acl("iris")
    with pytest.raises(NotFoundError):
        bob.datasets.get("iris")


# -- errors ------------------------------------------------------------------------------


def test_errors_map_to_their_classes(
    server: LiveServer, admin: Client, make_user: Callable[..., Client], tmp_path: Path
) -> None:
    csv = iris_csv(tmp_path / "iris.csv")
    admin.datasets.push("iris", csv, label="species")
    admin.models.create("m")

    with pytest.raises(NotFoundError) as not_found:
        admin.datasets.get("nope")
    assert not_found.value.status == 404
    assert not_found.value.problem_type is not None
    with pytest.raises(NotFoundError):
        admin.models.version("m", 7)
    with pytest.raises(NotFoundError):
        admin.jobs.get("0" * 32)

    with pytest.raises(ConflictError) as conflict:
        admin.datasets.push("iris", csv)
    assert conflict.value.status == 409
    with pytest.raises(ConflictError):
        admin.models.create("m")

    with pytest.raises(ValidationError) as invalid:
        admin.models.create("no spaces allowed")
    assert invalid.value.status == 422
    with pytest.raises(ValidationError, match="label"):
        admin.datasets.push("iris2", csv, label="no-such-column")
    with pytest.raises(ValidationError, match="dataset"):
        admin.jobs.create(train_spec(dataset="nope"))

    with (
        Client(server.url, "my_wrong-key") as stranger,
        pytest.raises(AuthenticationError) as unauthenticated,
    ):
        stranger.whoami()
    assert unauthenticated.value.status == 401
    with Client(server.url) as anonymous, pytest.raises(AuthenticationError):
        anonymous.models.list()

    reader = make_user("reader", ("read",))
    with pytest.raises(PermissionDeniedError) as forbidden:
        reader.models.create("mine")
    assert forbidden.value.status == 403
    writer = make_user("writer")
    with pytest.raises(PermissionDeniedError, match="admin"):
        writer.principals.create("mallory")
    # Every one of them is an APIError carrying the server's problem document.
    assert isinstance(forbidden.value, APIError)
    assert isinstance(forbidden.value.body, dict) and forbidden.value.body["status"] == 403


# -- jobs --------------------------------------------------------------------------------


def test_a_train_job_from_submission_to_registered_version(admin: Client) -> None:
    digits(admin)
    job = admin.jobs.create(train_spec(output_model="digits-small", log_every_steps=5))
    assert job.status == "queued"
    assert job.spec["output_model"] == "digits-small"

    assert job.wait(progress=True) is job
    assert (job.status, job.progress, job.error) == ("succeeded", 1.0, None)
    result = job.result
    assert (result["model"], result["version"]) == ("digits-small", 1)
    assert result["metrics"]["val"]["accuracy"] > 0.8

    version = admin.models.version("digits-small", 1)
    assert version.lineage.job == job.id
    assert version.metrics["val_accuracy"] == result["metrics"]["val"]["accuracy"]

    events = job.events()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.data["status"] for e in events if e.type == "status"] == [
        "queued",
        "running",
        "succeeded",
    ]
    assert [e.data["epoch"] for e in events if e.type == "epoch"] == [1, 2, 3]
    assert events[-1].ends_job
    # The live stream of a finished job replays what the list holds, then ends.
    assert [e.raw for e in admin.jobs.stream(job.id)] == [e.raw for e in events]
    assert [e.seq for e in job.stream(last_event_id=events[-3].seq)] == [e.seq for e in events[-2:]]
    assert [e.seq for e in job.events(after=events[-2].seq)] == [events[-1].seq]

    assert "[epoch] epoch 3" in job.logs()
    assert [j.id for j in admin.jobs.list(status="succeeded")] == [job.id]
    assert admin.jobs.list(status="failed") == []


def test_the_flat_form_trains_too(admin: Client) -> None:
    digits(admin)
    job = admin.jobs.create(
        model_name="mlp", data="digits", optimizer="adam", learning_rate=0.01, epochs=1
    )
    assert job.spec["arch_spec"]["num_outputs"] == 10
    assert job.wait().result["model"] == "digits-mlp"


def test_the_stream_survives_dropped_connections(server: LiveServer, admin: Client) -> None:
    digits(admin)
    job = admin.jobs.create(train_spec(epochs=4, log_every_steps=5))
    with (
        cutting_proxy(server.url, after_bytes=1500, cuts=3) as proxy,
        Client(proxy.url, server.admin_key) as flaky,
    ):
        streamed = list(flaky.jobs.stream(job.id))
        assert proxy.cut == 3
    assert [e.raw for e in streamed] == [e.raw for e in admin.jobs.events(job.id)]
    assert streamed[-1].ends_job


def test_cancelling_makes_wait_raise(admin: Client) -> None:
    digits(admin)
    job = admin.jobs.create(train_spec(epochs=500))
    for event in job.stream():
        if event.type == "step":
            break
    assert job.cancel().id == job.id
    with pytest.raises(JobFailedError) as info:
        job.wait()
    assert info.value.job_status == "cancelled"
    assert job.status == "cancelled" and job.done
    with pytest.raises(NotFoundError):
        admin.models.version("digits-mlp", 1)


def test_wait_gives_up_at_its_timeout_and_the_job_goes_on(admin: Client) -> None:
    digits(admin)
    job = admin.jobs.create(train_spec(epochs=500, log_every_steps=1))
    with pytest.raises(JobTimeoutError) as info:
        job.wait(timeout=3)
    assert info.value.job is job
    assert job.refresh().status in ("queued", "running")
    job.cancel()
    with pytest.raises(JobFailedError):
        job.wait()


def test_fit_trains_on_arrays_like_keras(admin: Client) -> None:
    from sklearn.datasets import load_digits

    data = load_digits()
    job = admin.fit(
        {"arch": "mlp", "hidden": [32]},
        data.data.astype(np.float32),
        data.target,
        epochs=3,
        validation_split=0.2,
        lr=0.01,
        output_model="digits-fit",
        preprocessing={"scale": 0.0625},
    )
    assert job.status == "succeeded"
    assert job.result["model"] == "digits-fit"
    assert job.result["metrics"]["val"]["accuracy"] > 0.8
    version = admin.models.version("digits-fit", job.result["version"])
    dataset = admin.datasets.get(job.spec["dataset"])
    assert version.lineage.dataset == dataset.id
    assert dataset.schema["arrays"]["x"]["shape"] == [1797, 64]
    assert version.spec is not None and version.spec["input_shape"] == [64]
