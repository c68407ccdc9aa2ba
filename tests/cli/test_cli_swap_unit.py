"""``--force`` on the commands that swap what a deployment serves, ``--signature`` on push,
and exit codes: a command whose deployment is not serving as asked fails (against a fake API)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli.fake_api import FakeAPI, answer, run
from tests.cli.test_cli_deploy_unit import deployment, sent
from tests.cli.test_cli_unit import VERSION


def test_deploy_and_update_send_force_only_when_asked(api: FakeAPI) -> None:
    api.routes["POST", "/api/v1/deployments"] = answer(201, deployment())
    api.routes["PATCH", "/api/v1/deployments/digits"] = answer(200, deployment())
    assert run("deploy", "digits", "--model", "digits-mlp").exit_code == 0
    assert "force" not in sent(api, "POST", "/api/v1/deployments")
    api.requests.clear()
    assert run("deploy", "digits", "--model", "digits-mlp", "--force").exit_code == 0
    assert sent(api, "POST", "/api/v1/deployments")["force"] is True
    result = run("deployments", "update", "digits", "--version", "3", "--force")
    assert result.exit_code == 0, result.output
    assert sent(api, "PATCH", "/api/v1/deployments/digits") == {
        "version": "3",
        "traffic": None,
        "force": True,
    }
    # --force alone takes a version an alias moved to that was held back.
    api.requests.clear()
    assert run("deployments", "update", "digits", "--force").exit_code == 0
    assert sent(api, "PATCH", "/api/v1/deployments/digits") == {"force": True}
    assert run("deployments", "update", "digits").exit_code == 2


def test_a_refused_swap_exits_1_with_the_servers_reason(api: FakeAPI) -> None:
    problem = {
        "title": "Conflict",
        "status": 409,
        "detail": "deployment 'digits': version 2: input 'input_layer' is gone",
    }
    api.routes["PATCH", "/api/v1/deployments/digits"] = answer(409, problem)
    result = run("deployments", "update", "digits", "--version", "2")
    assert result.exit_code == 1
    assert "input 'input_layer' is gone" in result.stderr and result.stdout == ""


def test_a_deployment_that_is_not_serving_as_asked_fails_the_command(api: FakeAPI) -> None:
    failed = deployment(status="failed", error="version 1 of 'ts': does not load", versions=[])
    api.routes["POST", "/api/v1/deployments"] = answer(201, failed)
    result = run("deploy", "digits", "--model", "ts")
    assert result.exit_code == 1
    assert "does not load" in result.stderr and "Deployed" not in result.stderr
    # --json still prints the deployment, for scripts, and fails the same way.
    result = run("deploy", "digits", "--model", "ts", "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["status"] == "failed"
    held = deployment(error="'production' of model 'm' moved to a version that would break")
    api.routes["PATCH", "/api/v1/deployments/digits"] = answer(200, held)
    assert run("deployments", "update", "digits", "--max-queue", "8").exit_code == 1


def test_runtime_help_names_every_engine() -> None:
    help_text = run("deploy", "--help").stdout
    for engine in ("torchscript", "torch_export", "onnxruntime", "keras"):
        assert engine in help_text


def test_push_sends_a_signature_inline_or_from_a_file_and_force(
    api: FakeAPI, tmp_path: Path
) -> None:
    api.routes["POST", "/api/v1/models/ts/versions"] = answer(201, {**VERSION, "model": "ts"})
    artifact = tmp_path / "model.pt"
    artifact.write_bytes(b"module")
    signature: dict[str, Any] = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    }
    result = run("models", "push", "ts", str(artifact), "--signature", json.dumps(signature))
    assert result.exit_code == 0, result.output
    assert json.loads(api.last.url.params["signature"]) == signature
    assert "force" not in api.last.url.params
    file = tmp_path / "signature.json"
    file.write_text(json.dumps(signature))
    result = run("models", "push", "ts", str(artifact), "--signature", str(file), "--force")
    assert result.exit_code == 0, result.output
    assert json.loads(api.last.url.params["signature"]) == signature
    assert api.last.url.params["force"] == "true"
    before = len(api.requests)
    assert run("models", "push", "ts", str(artifact), "--signature", "nope.json").exit_code == 2
    assert len(api.requests) == before


def test_alias_force(api: FakeAPI) -> None:
    api.routes["PUT", "/api/v1/models/mlp/aliases/production"] = answer(
        200, {"alias": "production", "version": 2}
    )
    assert run("models", "alias", "mlp", "production", "2").exit_code == 0
    assert json.loads(api.last.content) == {"version": 2}
    assert run("models", "alias", "mlp", "production", "2", "--force").exit_code == 0
    assert json.loads(api.last.content) == {"version": 2, "force": True}
