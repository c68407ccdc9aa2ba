"""The ``modelyard`` command line against a real server: the user story, end to end."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import Result

from tests.cli.fake_api import run
from tests.support.data import digits_npz, iris_csv, mlp_safetensors
from tests.support.server import LiveServer, live_server

CLI = Callable[..., Result]


@pytest.fixture
def server(make_settings: Callable[..., object]) -> Iterator[LiveServer]:
    with live_server(make_settings()) as srv:  # type: ignore[arg-type]
        yield srv


@pytest.fixture
def as_user(server: LiveServer) -> Callable[[str], CLI]:
    """``as_user(key)("datasets", "list")`` runs a command with that key on the server."""

    def bind(key: str) -> CLI:
        return lambda *args: run("--url", server.url, "--api-key", key, *args)

    return bind


@pytest.fixture
def admin(server: LiveServer, as_user: Callable[[str], CLI]) -> CLI:
    return as_user(server.admin_key)


def new_user(admin: CLI, name: str, *scopes: str) -> str:
    """Create a principal and a key for it with the CLI; return the key."""
    assert admin("principals", "create", name).exit_code == 0
    flags = [arg for scope in scopes or ("read", "write") for arg in ("-s", scope)]
    created = admin("keys", "create", f"{name}-key", *flags, "--principal", name)
    assert created.exit_code == 0, created.output
    return created.stdout.strip()


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def rows(result: Result) -> list[str]:
    return ok(result).stdout.splitlines()


def test_registry_story(admin: CLI, as_user: Callable[[str], CLI], tmp_path: Path) -> None:
    created = ok(admin("principals", "create", "alice"))
    assert "Created user alice" in created.stderr
    assert any("alice" in ln and "user" in ln for ln in rows(admin("principals", "list")))
    listed = json.loads(ok(admin("principals", "list", "--json")).stdout)
    assert sorted(p["name"] for p in listed) == ["admin", "alice"]

    secret = ok(
        admin(
            "keys",
            "create",
            "laptop",
            "-s",
            "read",
            "-s",
            "write",
            "-s",
            "keys",
            "--principal",
            "alice",
        )
    )
    key = secret.stdout.strip()
    assert key.startswith("my_") and "\n" not in key
    alice = as_user(key)
    assert any("laptop" in ln and "active" in ln for ln in rows(alice("keys", "list")))

    # Data sets: CSV, NPZ and an IDX pair.
    csv = iris_csv(tmp_path / "iris.csv")
    pushed = ok(alice("datasets", "push", "iris", str(csv), "--label", "species"))
    assert "Pushed iris: csv table, 150 rows" in pushed.stderr
    ok(
        alice(
            "datasets", "push", "digits", str(digits_npz(tmp_path / "digits.npz")), "--label", "y"
        )
    )
    images, labels = tmp_path / "images-idx3-ubyte", tmp_path / "labels-idx1-ubyte"
    images.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2]) + bytes(8))
    labels.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 2, 1, 0]))
    idx = ok(alice("datasets", "push", "pairs", str(images), str(labels)))
    assert "Pushed pairs: idx arrays, 2 rows" in idx.stderr

    lines = rows(alice("datasets", "list"))
    assert any("iris" in ln and "csv" in ln and "150" in ln and "alice" in ln for ln in lines)
    assert any("digits" in ln and "npz" in ln and "1797" in ln for ln in lines)
    names = [d["name"] for d in json.loads(ok(alice("datasets", "list", "--json")).stdout)]
    assert sorted(names) == ["digits", "iris", "pairs"]
    shown = rows(alice("datasets", "show", "iris"))
    assert any("species" in ln and "yes" in ln for ln in shown)
    arrays = rows(alice("datasets", "show", "digits"))
    assert any("x" in ln and "float32" in ln and "(1797, 64)" in ln for ln in arrays)
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    ok(alice("datasets", "pull", "iris", "-o", str(pulled)))
    [file] = pulled.iterdir()
    assert file.read_bytes() == csv.read_bytes()

    # Models: versions, an alias, a pull.
    ok(alice("models", "create", "iris-mlp", "--task", "classification"))
    weights = mlp_safetensors(tmp_path / "model.safetensors")
    first = ok(alice("models", "push", "iris-mlp", str(weights), "--metrics", '{"accuracy": 0.9}'))
    assert "Pushed iris-mlp v1 (safetensors" in first.stderr
    ok(alice("models", "push", "iris-mlp", str(weights), "--parent", "1"))
    assert (
        "iris-mlp@production → v2"
        in ok(alice("models", "alias", "iris-mlp", "production", "2")).stderr
    )
    lines = rows(alice("models", "show", "iris-mlp"))
    assert any("safetensors" in ln and "accuracy=0.9" in ln for ln in lines)
    assert any("production" in ln and "2" in ln for ln in lines)
    model = json.loads(ok(alice("models", "show", "iris-mlp", "--json")).stdout)
    assert (model["latest_version"], model["aliases"]) == (2, {"production": 2})
    assert [v["lineage"]["parent_version"] for v in model["versions"]] == [None, 1]
    assert any("iris-mlp" in ln and "production=2" in ln for ln in rows(alice("models", "list")))
    target = tmp_path / "prod.safetensors"
    ok(alice("models", "pull", "iris-mlp", "production", "-o", str(target)))
    assert target.read_bytes() == weights.read_bytes()

    ok(alice("datasets", "rm", "pairs"))
    assert alice("datasets", "show", "pairs").exit_code == 1


def test_sharing_and_errors(admin: CLI, as_user: Callable[[str], CLI], tmp_path: Path) -> None:
    alice = as_user(new_user(admin, "alice"))
    bob = as_user(new_user(admin, "bob"))
    reader = as_user(new_user(admin, "reader", "read"))
    csv = iris_csv(tmp_path / "iris.csv")
    ok(alice("datasets", "push", "iris", str(csv), "--label", "species"))
    ok(alice("models", "create", "iris-mlp"))

    hidden = bob("datasets", "show", "iris")
    assert hidden.exit_code == 1
    assert "Error 404" in hidden.stderr
    assert rows(bob("datasets", "list", "--json")) == ["[]"]

    shared = json.loads(
        ok(alice("datasets", "acl", "iris", "--grant", "bob:read", "--json")).stdout
    )
    assert shared["grants"] == [{"principal": "bob", "permission": "read"}]
    assert any("bob" in ln and "read" in ln for ln in rows(alice("datasets", "acl", "iris")))
    assert any("species" in ln for ln in rows(bob("datasets", "show", "iris")))
    refused = bob("datasets", "rm", "iris")
    assert refused.exit_code == 1
    assert "Error 403" in refused.stderr

    ok(alice("models", "acl", "iris-mlp", "--public"))
    assert json.loads(ok(bob("models", "show", "iris-mlp", "--json")).stdout)["public"] is True
    ok(alice("datasets", "acl", "iris", "--revoke", "bob"))
    assert bob("datasets", "show", "iris").exit_code == 1

    cases = [
        (alice("datasets", "push", "iris", str(csv)), "Error 409"),
        (alice("models", "create", "no spaces"), "Error 422"),
        (alice("datasets", "push", "other", str(csv), "--label", "nope"), "Error 422"),
        (reader("models", "create", "mine"), "Error 403"),
        (alice("principals", "list"), "Error 403"),
        (as_user("my_not-a-key")("models", "list"), "Error 401"),
        (alice("jobs", "show", "0" * 32), "Error 404"),
    ]
    for result, expected in cases:
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(expected), result.stderr
        assert result.stdout == ""


def test_training_story(admin: CLI, tmp_path: Path) -> None:
    ok(
        admin(
            "datasets", "push", "digits", str(digits_npz(tmp_path / "digits.npz")), "--label", "y"
        )
    )
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"arch": "mlp", "hidden": [32]}))
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"preprocessing": {"scale": 0.0625}, "log_every_steps": 5}))

    trained = ok(
        admin(
            "train",
            "--spec",
            str(spec),
            "--dataset",
            "digits",
            "--epochs",
            "2",
            "--lr",
            "0.01",
            "--batch-size",
            "64",
            "--output-model",
            "digits-mlp",
            "--validation-split",
            "0.2",
            "--config",
            str(extra),
            "--follow",
        )
    )
    lines = trained.stdout.splitlines()
    assert any("Status" in ln and "succeeded" in ln for ln in lines)
    assert any("Model" in ln and "digits-mlp v1" in ln for ln in lines)
    assert any("val" in ln and "accuracy" in ln for ln in lines)
    assert "epoch 2/2" in trained.stderr

    [listed] = json.loads(ok(admin("jobs", "list", "--json")).stdout)
    job_id = listed["id"]
    assert listed["result"]["model"] == "digits-mlp"
    assert any(job_id in ln and "succeeded" in ln for ln in rows(admin("jobs", "list")))
    shown = json.loads(ok(admin("jobs", "show", job_id, "--json")).stdout)
    assert shown["spec"]["config"]["batch_size"] == 64
    assert shown["spec"]["config"]["optimizer"]["lr"] == 0.01
    assert "[epoch] epoch 2" in ok(admin("jobs", "logs", job_id)).stdout
    assert any("epoch" in ln and "epoch 2/2" in ln for ln in rows(admin("jobs", "events", job_id)))
    streamed = [json.loads(ln) for ln in rows(admin("jobs", "events", job_id, "-f", "--json"))]
    assert streamed[-1]["data"] == {"status": "succeeded"}
    assert [e["seq"] for e in streamed] == list(range(1, len(streamed) + 1))
    version = json.loads(ok(admin("models", "show", "digits-mlp", "--json")).stdout)
    assert version["versions"][0]["lineage"]["job"] == job_id

    # Without --follow: the id alone, to script with; then cancel it.
    submitted = ok(admin("train", "--spec", "mlp", "--dataset", "digits", "--epochs", "500"))
    second = submitted.stdout.strip()
    assert len(second) == 32 and second != job_id
    ok(admin("jobs", "cancel", second))
    rows(admin("jobs", "events", second, "--follow"))  # returns once the job has ended
    assert json.loads(ok(admin("jobs", "show", second, "--json")).stdout)["status"] == "cancelled"
    assert rows(admin("jobs", "list", "--status", "cancelled", "--json"))[0] == "["
