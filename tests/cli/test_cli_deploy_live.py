"""``modelyard deploy``, ``deployments`` and ``predict`` against a real server."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import Result

from modelyard.client import Client
from tests.cli.fake_api import run
from tests.client.served import forward, push_mlp, rows
from tests.support.server import LiveServer, live_server


@pytest.fixture
def server(make_settings: Callable[..., object]) -> Iterator[LiveServer]:
    with live_server(make_settings()) as srv:  # type: ignore[arg-type]
        yield srv


@pytest.fixture
def cli(server: LiveServer) -> Callable[..., Result]:
    return lambda *args: run("--url", server.url, "--api-key", server.admin_key, *args)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def outputs(result: Result) -> np.ndarray:
    return np.asarray(json.loads(ok(result).stdout)["outputs"]["output"], dtype=np.float32)


def test_deploy_predict_swap_and_remove(
    server: LiveServer, cli: Callable[..., Result], tmp_path: Path
) -> None:
    with Client(server.url, server.admin_key) as client:
        first = push_mlp(client, "digits-mlp", tmp_path, seed=0)
        second = push_mlp(client, "digits-mlp", tmp_path, seed=1)

    deployed = ok(cli("deploy", "digits", "--model", "digits-mlp@1", "--max-batch-size", "8"))
    assert "Deployed digits: digits-mlp v1" in deployed.stderr
    lines = deployed.stdout.splitlines()
    assert any("Status" in ln and "ready" in ln for ln in lines)
    assert any("v1" in ln and "100%" in ln and "input FP32 [-1, 64]" in ln for ln in lines)
    assert any(
        "digits" in ln and "ready" in ln
        for ln in ok(cli("deployments", "list")).stdout.splitlines()
    )
    shown: dict[str, Any] = json.loads(ok(cli("deployments", "show", "digits", "--json")).stdout)
    assert (shown["spec"]["max_batch_size"], shown["versions"][0]["version"]) == (8, 1)

    # The same rows from each kind of input file.
    x = rows(5)
    expected = forward(first, x)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "x.json").write_text(json.dumps({"inputs": x.tolist()}))
    (tmp_path / "x.csv").write_text(
        "\n".join(",".join(repr(float(v)) for v in row) for row in x) + "\n"
    )
    for name in ("x.npy", "x.json", "x.csv"):
        got = outputs(cli("predict", "digits", "--input", str(tmp_path / name), "--json"))
        np.testing.assert_allclose(got, expected, atol=1e-5)
    table = ok(cli("predict", "digits", "-i", str(tmp_path / "x.npy"))).stdout
    assert "output (float32, shape (5, 10))" in table

    # A large batch as a named input, saved to a file (it travels as binary tensors).
    large = rows(3000, seed=2)
    np.savez(tmp_path / "large.npz", input=large)
    saved = tmp_path / "out.npy"
    ok(cli("predict", "digits", "-i", str(tmp_path / "large.npz"), "-o", str(saved)))
    np.testing.assert_allclose(np.load(saved), forward(first, large), atol=1e-5)

    # Hot swap to v2, then a canary back to v1 that a pinned request can reach.
    swapped = ok(cli("deployments", "update", "digits", "--version", "2"))
    assert "Updated digits: digits-mlp v2" in swapped.stderr
    got = outputs(cli("predict", "digits", "-i", str(tmp_path / "x.npy"), "--json"))
    np.testing.assert_allclose(got, forward(second, x), atol=1e-5)
    split = ok(cli("deployments", "update", "digits", "--canary", "1:25", "--json"))
    weights = {v["version"]: v["weight"] for v in json.loads(split.stdout)["versions"]}
    assert weights == {2: 75.0, 1: 25.0}
    pinned = cli("predict", "digits", "-i", str(tmp_path / "x.npy"), "--version", "1", "--json")
    np.testing.assert_allclose(outputs(pinned), expected, atol=1e-5)

    assert "Deleted deployment digits" in ok(cli("deployments", "rm", "digits")).stderr
    assert json.loads(ok(cli("deployments", "list", "--json")).stdout) == []
    gone = cli("predict", "digits", "-i", str(tmp_path / "x.npy"))
    assert gone.exit_code == 1
    assert "Error 404" in gone.stderr
