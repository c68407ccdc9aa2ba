"""``modelyard demo``: the main user story on real data, on its own server and on yours."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from modelyard.client import Client
from tests.cli.fake_api import run
from tests.support.server import live_server

MIN_ACCURACY = 0.95


@pytest.mark.slow
def test_demo_trains_accurate_models_on_a_throwaway_server(short_tmp: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    # Everything the demo and its server write goes under TMPDIR or the working directory,
    # so an empty folder afterwards shows that nothing was left behind.
    env["TMPDIR"] = str(short_tmp)
    done = subprocess.run(
        [sys.executable, "-m", "modelyard", "demo", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=short_tmp,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)

    assert [(d["name"], d["num_rows"]) for d in summary["datasets"]] == [
        ("digits-train", 1437),
        ("digits-test", 360),
    ]
    assert [(j["arch"], j["status"]) for j in summary["jobs"]] == [
        ("mlp", "succeeded"),
        ("cnn", "succeeded"),
    ]
    versions = {v["arch"]: v for v in summary["versions"]}
    assert (versions["mlp"]["model"], versions["mlp"]["version"]) == ("digits-mlp", 1)
    assert (versions["cnn"]["model"], versions["cnn"]["version"]) == ("digits-cnn", 1)
    # Each version was read back from the registry, and names the job that made it.
    jobs = {j["arch"]: j["id"] for j in summary["jobs"]}
    assert {arch: v["job"] for arch, v in versions.items()} == jobs
    assert all(v["format"] == "safetensors" and len(v["sha256"]) == 64 for v in versions.values())
    assert summary["metrics"]["mlp"]["test_accuracy"] >= MIN_ACCURACY
    assert summary["metrics"]["cnn"]["test_accuracy"] >= MIN_ACCURACY
    # The deployed MLP classifies the held-out digits exactly as its job measured.
    [deployment] = summary["deployments"]
    assert (deployment["name"], deployment["model"], deployment["version"]) == (
        "digits-demo",
        "digits-mlp",
        1,
    )
    assert deployment["status"] == "ready"
    served = summary["metrics"]["served_accuracy"]
    assert served == pytest.approx(summary["metrics"]["mlp"]["test_accuracy"], abs=1e-6)
    assert (deployment["served_accuracy"], deployment["test_accuracy"]) == (
        served,
        summary["metrics"]["mlp"]["test_accuracy"],
    )
    assert summary["server"] is None
    assert list(short_tmp.iterdir()) == []


@pytest.mark.slow
def test_demo_on_a_given_server_keeps_its_work_under_fresh_names(
    make_settings: Callable[..., object],
) -> None:
    with (
        live_server(make_settings()) as server,  # type: ignore[arg-type]
        Client(server.url, server.admin_key) as client,
    ):
        client.datasets.push_arrays("digits-train", x=[[0.0]], y=[0])
        result = run("--url", server.url, "--api-key", server.admin_key, "demo")
        assert result.exit_code == 0, result.output

        lines = result.stdout.splitlines()
        [train] = [d for d in client.datasets.list() if d.name.startswith("digits-train-")]
        suffix = train.name.removeprefix("digits-train")
        [mlp] = client.models.versions(f"digits-mlp{suffix}")
        assert client.datasets.get(f"digits-test{suffix}").num_rows == 360
        for arch in ("mlp", "cnn"):
            [version] = client.models.versions(f"digits-{arch}{suffix}")
            assert version.metrics["val_accuracy"] >= MIN_ACCURACY
            assert version.lineage.dataset == train.id
            shown = f"{version.metrics['val_accuracy']:.2%}"
            assert any(f"digits-{arch}{suffix}" in ln and shown in ln for ln in lines)
        assert "Kept on the server" in result.stderr

        # The deployment stays too, serving the MLP's version on the held-out split.
        deployment = client.deployments.get(f"digits-demo{suffix}")
        assert (deployment.model, [v.version for v in deployment.versions]) == (
            f"digits-mlp{suffix}",
            [1],
        )
        shown = f"{mlp.metrics['val_accuracy']:.2%}"
        assert any(f"digits-demo{suffix}" in ln and ln.count(shown) == 2 for ln in lines), (
            result.stdout
        )
        assert "but its job measured" not in result.stderr
        logits = deployment.predict(np.zeros((2, 64), np.float32))
        assert isinstance(logits, np.ndarray) and logits.shape == (2, 10)
