"""The CLI and SDK show a version's privacy guarantee and a data set's privacy budget."""

from __future__ import annotations

import json

from modelyard.client import ModelVersion
from tests.cli.fake_api import FakeAPI, answer, page, run

OWNER = {"id": "p" * 32, "name": "alice"}
WHEN = "2026-12-06T10:00:00+00:00"
PRIVACY = {
    "epsilon": 2.994,
    "delta": 1e-5,
    "noise_multiplier": 2.754,
    "max_grad_norm": 1.0,
    "accountant": "prv",
    "sample_rate": 1 / 6,
    "steps": 120,
}
VERSION = {
    "id": "v" * 32,
    "model": "mlp",
    "version": 1,
    "format": "safetensors",
    "sha256": "0" * 64,
    "size": 4096,
    "spec": {"arch": "mlp"},
    "signature": None,
    "metrics": {},
    "params": {"privacy": PRIVACY},
    "privacy": PRIVACY,
    "description": "",
    "lineage": {"dataset": None, "job": None, "parent_version": None},
    "created_by": OWNER,
    "created_at": WHEN,
}
MODEL = {
    "id": "m" * 32,
    "name": "mlp",
    "task": None,
    "description": "",
    "owner": OWNER,
    "created_at": WHEN,
    "latest_version": 1,
    "aliases": {},
    "public": False,
}
BUDGET = {
    "dataset": "digits",
    "budget": {"epsilon": 8.0, "delta": 1e-4},
    "allow_non_private": False,
    "spent": {"epsilon": 2.994, "delta": 1e-5},
    "left": {"epsilon": 5.006, "delta": 9e-5},
    "updated_at": WHEN,
    "ledger": [
        {
            "job_id": "j" * 32,
            "model": "mlp",
            "version": 1,
            "epsilon": 2.994,
            "delta": 1e-5,
            "status": "spent",
            "created_at": WHEN,
        }
    ],
}


def test_the_sdk_reads_a_versions_privacy() -> None:
    assert ModelVersion.from_json(VERSION).privacy == PRIVACY
    assert ModelVersion.from_json({**VERSION, "privacy": None, "params": {}}).privacy is None


def test_models_show_has_a_privacy_column(api: FakeAPI) -> None:
    api.routes[("GET", "/api/v1/models/mlp")] = answer(body=MODEL)
    api.routes[("GET", "/api/v1/models/mlp/versions")] = page(VERSION)
    result = run("models", "show", "mlp")
    assert result.exit_code == 0, result.output
    assert "ε=2.99, δ=1e-05 (prv, σ=2.75, C=1)" in result.stdout


def test_datasets_budget_shows_and_sets_the_budget(api: FakeAPI) -> None:
    path = "/api/v1/datasets/digits/privacy-budget"
    api.routes[("GET", path)] = answer(body=BUDGET)
    api.routes[("PUT", path)] = answer(body=BUDGET)
    shown = run("datasets", "budget", "digits")
    assert shown.exit_code == 0, shown.output
    assert "5.006" in shown.stdout and "spent" in shown.stdout
    assert "j" * 32 in shown.stdout
    set_ = run("datasets", "budget", "digits", "--epsilon", "8", "--delta", "1e-4")
    assert set_.exit_code == 0, set_.output
    assert json.loads(api.last.content) == {
        "epsilon": 8.0,
        "delta": 1e-4,
        "allow_non_private": False,
    }
    assert run("datasets", "budget", "digits", "--epsilon", "8").exit_code == 2
