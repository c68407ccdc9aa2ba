"""The first steps of a new user, with the CLI against a real server: push a TorchScript
file to a new name, deploy it on the wrong and then the right runtime."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import Result

from tests.cli.fake_api import run
from tests.serving.user_models import mlp, torchscript_file
from tests.support.server import LiveServer, live_server


@pytest.fixture
def server(make_settings: Callable[..., object]) -> Iterator[LiveServer]:
    with live_server(make_settings()) as srv:  # type: ignore[arg-type]
        yield srv


def test_push_a_new_name_then_deploy_on_the_runtime_the_error_names(
    server: LiveServer, tmp_path: Path
) -> None:
    def cli(*args: str) -> Result:
        return run("--url", server.url, "--api-key", server.admin_key, *args)

    path = torchscript_file(tmp_path, "classifier", mlp())
    pushed = cli("models", "push", "classifier", str(path))
    assert pushed.exit_code == 0, pushed.output
    assert "Pushed classifier v1 (torchscript" in pushed.stderr

    refused = cli("deploy", "web", "--model", "classifier", "--runtime", "torch")
    assert refused.exit_code == 1, refused.output
    assert "choose auto, torchscript" in refused.stderr
    assert cli("deployments", "show", "web").exit_code == 1  # nothing was stored

    deployed = cli("deploy", "web", "--model", "classifier", "--runtime", "torchscript")
    assert deployed.exit_code == 0, deployed.output
    assert "Deployed web: classifier v1" in deployed.stderr
