"""The SDK's ``client.usage`` and the ``modelyard usage`` command against a live server."""

from __future__ import annotations

import time

import httpx
from typer.testing import CliRunner

from modelyard import Client
from modelyard.cli.main import app
from tests.support.server import LiveServer
from tests.usage.conftest import make_key, predict


def test_the_sdk_sets_limits_and_reads_usage_and_the_cli_charts_it(
    served: LiveServer, admin: httpx.Client
) -> None:
    key = make_key(admin, "sdk-user", ["infer", "read"])
    with Client(served.url, api_key=served.admin_key) as client:
        limits = client.usage.set_key_limits(key.id, requests_per_minute=2)
        assert limits["requests_per_minute"] == 2
        assert client.usage.key_limits(key.id)["requests_per_minute"] == 2
        with key.client(served.url) as user:
            codes = [predict(user).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        start = time.time() - 60
        deadline = time.monotonic() + 10
        while True:
            page = client.usage.get(start, bucket_width="1h", group_by=["key"])
            mine = [r for b in page["data"] for r in b["results"] if r["api_key_id"] == key.id]
            if mine or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert sum(r["num_model_requests"] for r in mine) == 2
        costs = client.usage.costs(start, group_by=["line_item"])
        assert costs["object"] == "page"
        client.usage.clear_key_limits(key.id)

    env = {"MODELYARD_URL": served.url, "MODELYARD_API_KEY": served.admin_key}
    result = CliRunner().invoke(
        app, ["usage", "--since", "1h", "--bucket", "1m", "--group-by", "key"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert key.id in result.output
    assert "█" in result.output
    result = CliRunner().invoke(app, ["usage", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert '"object": "page"' in result.output
