"""Deployments: the list, one deployment (traffic split, load per version, a form to try a
prediction), and deploying a version."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import ValidationError
from starlette.responses import Response

from modelyard.api.routes.deployments import create_deployment, predict
from modelyard.api.schemas.deployments import DeploymentCreate, PredictIn
from modelyard.errors import InvalidInput, ModelyardError, without_paths
from modelyard.ui.load import LoadTracker
from modelyard.ui.render import pager
from modelyard.ui.routing import Ui, UiDep, UiRoute, see_other
from modelyard.ui.sessions import PATH

router = APIRouter(prefix=f"{PATH}/deployments", route_class=UiRoute, include_in_schema=False)

PageNo = Annotated[int, Query(ge=1, le=10**9)]
Search = Annotated[str | None, Query(max_length=128)]


def _tracker(ui: Ui) -> LoadTracker:
    tracker: LoadTracker = ui.request.app.state.ui_load
    return tracker


def loads_of(ui: Ui, name: str) -> list[Any]:
    """The load of each version ``name`` serves on this server."""
    live = ui.platform.serving.status(name)
    versions = [str(served.number) for served, _ in live.routes] if live else []
    return _tracker(ui).of(name, versions)


@router.get("")
def deployments_page(ui: UiDep, q: Search = None, page: PageNo = 1, size: int = 25) -> Response:
    pages = pager(ui.request, page, size, q=q)
    rows, total = ui.platform.deployments.list_deployments(ui.caller, pages.size, pages.offset, q)
    items = [(row, ui.platform.serving.status(row.name)) for row in rows]
    return ui.page("deployments.html", deployments=items, pager=pages.with_total(total), q=q)


@router.post("")
async def deploy(ui: UiDep) -> Response:
    """Deploy a version: the API's own create call, with the signed-in caller."""
    form = await ui.form()
    body = {
        "name": str(form.get("name") or "").strip(),
        "model": str(form.get("model") or ""),
        "version": str(form.get("version") or "latest"),
    }
    try:
        create = DeploymentCreate.model_validate(body)
    except ValidationError as exc:
        raise InvalidInput(str(exc.errors()[0].get("msg", "invalid deployment"))) from exc
    await create_deployment(create, ui.platform, ui.caller)
    return see_other(f"{PATH}/deployments/{create.name}")


def _deployment_context(ui: Ui, name: str) -> dict[str, Any]:
    row = ui.platform.deployments.get(ui.caller, name)
    live = ui.platform.serving.status(name)
    example = ""
    if live and live.routes:
        runtime = live.routes[0][0].runtime
        inputs = list(getattr(runtime, "inputs", []))
        if len(inputs) == 1 and inputs[0].shape:
            width = [d if isinstance(d, int) and d > 0 else 1 for d in inputs[0].shape[1:]]
            example = json.dumps(_zeros(width))
    return {
        "deployment": row,
        "live": live,
        "loads": loads_of(ui, name),
        "example": example,
    }


def _zeros(shape: list[int]) -> Any:
    """One row of zeros of ``shape`` (a sample input for the form), kept small."""
    if not shape:
        return [0.0]
    if len(shape) == 1:
        return [[0.0] * min(shape[0], 1024)]
    return [_zeros(shape[1:])[0] for _ in range(min(shape[0], 64))]


@router.get("/{name}")
def deployment_page(ui: UiDep, name: str) -> Response:
    return ui.page(
        "deployment.html", inputs="", answer=None, error=None, **_deployment_context(ui, name)
    )


@router.get("/{name}/load")
def deployment_load(ui: UiDep, name: str) -> Response:
    """The per-version load table (htmx polls it)."""
    ui.platform.deployments.get(ui.caller, name)
    return ui.page("deployment_load.html", loads=loads_of(ui, name))


@router.post("/{name}/predict")
async def try_predict(ui: UiDep, name: str) -> Response:
    """Send the form's inputs to the deployment: the API's own predict call."""
    form = await ui.form()
    raw = str(form.get("inputs") or "")
    answer: Any = None
    error: str | None = None
    try:
        try:
            inputs = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"inputs: not valid JSON ({exc.msg} at position {exc.pos})") from exc
        try:
            body = PredictIn.model_validate({"inputs": inputs})
        except ValidationError as exc:
            raise InvalidInput("inputs: give a list of rows, or an object of named lists") from exc
        reply = await predict(name, body, ui.platform, ui.caller)
        answer = json.loads(bytes(reply.body))
    except ModelyardError as exc:
        error = without_paths(exc.detail, ui.platform.settings.private_roots())
    if ui.request.headers.get("hx-request"):
        return ui.page("predict_result.html", answer=answer, error=error)
    return ui.page(
        "deployment.html",
        inputs=raw,
        answer=answer,
        error=error,
        **_deployment_context(ui, name),
    )
