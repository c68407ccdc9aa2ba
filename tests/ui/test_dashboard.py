"""The user's story in a real Chromium: sign in, watch a job's curve grow, deploy a version,
predict from the form, compare two versions, sign out; a screenshot of each page."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.jobs.conftest import MLP, upload_digits, wait_for
from tests.support.server import LiveServer
from tests.ui.conftest import shot

MODEL = "digits-ui"


def _train(admin: httpx.Client, **overrides: Any) -> str:
    body: dict[str, Any] = {
        "type": "train",
        "model": {"spec": MLP},
        "dataset": "digits",
        "output_model": MODEL,
        "optimizer": {"name": "adam", "lr": 0.01},
        "epochs": 2,
        "batch_size": 64,
        "seed": 1,
        "validation": {"fraction": 0.2, "seed": 0},
        "preprocessing": {"scale": 0.0625},
    }
    body.update(overrides)
    reply = admin.post("/api/v1/jobs", json=body)
    assert reply.status_code == 201, reply.text
    job_id: str = reply.json()["id"]
    return job_id


@pytest.fixture(scope="module")
def trained(admin: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two versions of MODEL, trained by two short jobs with different learning rates."""
    upload_digits(admin, tmp_path_factory.mktemp("digits"))
    jobs = [_train(admin), _train(admin, optimizer={"name": "adam", "lr": 0.002})]
    for job_id in jobs:
        assert wait_for(admin, job_id)["status"] == "succeeded"
    return jobs


@pytest.fixture(scope="module")
def page(browser: Browser, server: LiveServer, trained: list[str]) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


def test_sign_in_shows_the_overview(page: Page, server: LiveServer) -> None:
    page.goto(f"{server.url}/ui/jobs")
    expect(page).to_have_url(f"{server.url}/ui/login?next=/ui/jobs")
    shot(page, "sign-in")
    page.get_by_label("API key").fill(server.admin_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server.url}/ui/jobs")
    page.get_by_role("link", name="Overview").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    shot(page, "overview")
    cookie = next(c for c in page.context.cookies() if c["name"] == "modelyard_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert server.admin_key not in cookie["value"]


def test_a_running_jobs_curve_grows_and_the_job_can_be_cancelled(
    page: Page, server: LiveServer, admin: httpx.Client
) -> None:
    job_id = _train(admin, epochs=200, batch_size=8, output_model="digits-long")
    wait_for(admin, job_id, ("running",))
    page.goto(f"{server.url}/ui/jobs?status=running")
    page.get_by_role("link", name=job_id[:12]).click()
    chart = page.locator("#job-chart")

    def points() -> int:
        return int(chart.get_attribute("data-points") or 0)

    seen = []
    deadline = time.monotonic() + 120
    while len(seen) < 3 and time.monotonic() < deadline:
        now = points()
        if now > (seen[-1] if seen else 0):
            seen.append(now)
        page.wait_for_timeout(300)
    assert len(seen) == 3, f"the curve did not grow while the job ran: {seen}"
    assert admin.get(f"/api/v1/jobs/{job_id}").json()["status"] == "running"
    expect(chart.locator("canvas")).to_have_count(1)
    shot(page, "job-live")
    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=60_000)
    assert wait_for(admin, job_id)["status"] == "cancelled"


def test_deploy_a_version_and_predict_from_the_form(page: Page, server: LiveServer) -> None:
    page.goto(f"{server.url}/ui/models")
    page.get_by_role("link", name=MODEL, exact=True).click()
    page.get_by_role("link", name="v2", exact=True).click()
    expect(page.get_by_role("heading", name="Lineage")).to_be_visible()
    shot(page, "version")
    page.get_by_label("Deployment name").fill("digits-ui-live")
    page.get_by_role("button", name="Deploy").click()
    expect(page).to_have_url(f"{server.url}/ui/deployments/digits-ui-live")
    from sklearn.datasets import load_digits

    digits = load_digits()
    row = digits.data[:1].astype(np.float32).tolist()
    page.get_by_label("Inputs (JSON").fill(str(row))
    page.get_by_role("button", name="Predict").click()
    answer = page.locator("#predict-answer")
    expect(answer).to_be_visible()
    assert "Answered by version 2" in page.locator("#predict-result").inner_text()
    (outputs,) = json.loads(answer.inner_text()).values()
    assert np.array(outputs).shape == (1, 10)
    expect(page.locator(".load tbody tr")).to_have_count(1)
    shot(page, "deployment")
    page.get_by_role("link", name="Deployments").click()
    expect(page.get_by_role("link", name="digits-ui-live")).to_be_visible()
    shot(page, "deployments")


def test_compare_two_versions(page: Page, server: LiveServer) -> None:
    page.goto(f"{server.url}/ui/models/{MODEL}")
    page.get_by_role("button", name="Compare").click()
    expect(page.get_by_role("heading", name="Hyper-parameters")).to_be_visible()
    chart = page.locator("#compare-chart")
    expect(chart.locator("canvas")).to_have_count(1)
    assert int(chart.get_attribute("data-points") or 0) > 0
    legend = chart.inner_text()
    assert "v1 loss" in legend and "v2 loss" in legend
    assert "0.002" in page.locator("table.compare").nth(1).inner_text()
    shot(page, "compare")


def test_list_pages(page: Page, server: LiveServer) -> None:
    for path, name in (("/ui/datasets", "datasets"), ("/ui/jobs", "jobs"), ("/ui/keys", "keys")):
        page.goto(f"{server.url}{path}")
        expect(page.locator("main table").first).to_be_visible()
        shot(page, name)
    page.goto(f"{server.url}/ui/datasets/digits")
    expect(page.get_by_role("heading", name="First rows")).to_be_visible()
    assert page.locator("table.preview tbody tr").count() == 10
    assert page.get_by_role("link", name=f"{MODEL} v1").count() == 1
    shot(page, "dataset")


def test_sign_out(page: Page, server: LiveServer) -> None:
    page.goto(f"{server.url}/ui")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{server.url}/ui/login")
    page.goto(f"{server.url}/ui/jobs")
    expect(page).to_have_url(f"{server.url}/ui/login?next=/ui/jobs")
    assert not [c for c in page.context.cookies() if c["name"] == "modelyard_session"]


def test_screenshots_were_saved() -> None:
    folder = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
    assert {"overview.png", "job-live.png", "compare.png", "deployment.png"} <= {
        p.name for p in folder.glob("*.png")
    }
