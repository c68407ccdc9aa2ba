"""``modelyard explain`` (and the SDK's ``Deployment.explain`` under it) against a fake API,
and ``--ca-bundle`` reaching the client."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np

from tests.cli.fake_api import FakeAPI, answer, run
from tests.cli.test_cli_deploy_unit import deployment

EXPLAINED = {
    "deployment": "iris",
    "model_version": 2,
    "method": "occlusion",
    "output": "output",
    "target": [1, 0],
    "attributions": [[0.5, -2.0, 0.1], [0.0, 0.25, -0.75]],
    "convergence_delta": None,
    "feature_names": ["a", "b", "c"],
}


def test_explain_sends_the_method_and_prints_the_strongest_features(
    api: FakeAPI, tmp_path: Path
) -> None:
    api.routes["GET", "/api/v1/deployments/iris"] = answer(200, deployment(name="iris"))
    api.routes["POST", "/api/v1/deployments/iris/explain"] = answer(200, EXPLAINED)
    rows = tmp_path / "x.npy"
    np.save(rows, np.ones((2, 3), dtype=np.float32))
    ca = tmp_path / "ca.pem"
    ca.write_text("not read by the fake API")
    result = run(
        "--ca-bundle",
        str(ca),
        "explain",
        "iris",
        "-i",
        str(rows),
        "--method",
        "occlusion",
        "--window",
        "2",
        "--target",
        "1",
    )
    assert result.exit_code == 0, result.output
    body = json.loads(api.last.content)
    assert body == {
        "inputs": [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],
        "method": "occlusion",
        "window": 2,
        "target": 1,
    }
    assert api.ca_bundles == [ca]
    first = next(line for line in result.stdout.splitlines() if "b -2" in line)
    assert first.index("b -2") < first.index("a +0.5")  # strongest first, named

    saved = tmp_path / "a.npy"
    assert run("explain", "iris", "-i", str(rows), "-o", str(saved)).exit_code == 0
    assert np.load(saved).shape == (2, 3)


def test_explain_refuses_an_unknown_method_before_any_request(api: FakeAPI, tmp_path: Path) -> None:
    rows = tmp_path / "x.npy"
    np.save(rows, np.ones((1, 3)))
    result = run("explain", "iris", "-i", str(rows), "--method", "lime")
    assert result.exit_code == 2 and api.requests == []
    api.routes["GET", "/api/v1/deployments/iris"] = answer(200, deployment(name="iris"))
    problem = {"title": "Invalid input", "status": 422, "detail": "n_steps: 1000000 is more"}
    api.routes["POST", "/api/v1/deployments/iris/explain"] = lambda _r: httpx.Response(
        422, json=problem
    )
    refused = run("explain", "iris", "-i", str(rows), "--n-steps", "1000000")
    assert refused.exit_code == 1 and "n_steps: 1000000" in refused.stderr
