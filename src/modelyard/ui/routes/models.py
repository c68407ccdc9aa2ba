"""Models, their versions (signature, metrics, parameters, lineage, aliases) and a comparison
of two versions with their training curves overlaid."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from modelyard.api.routes.models import _model_out
from modelyard.db.tables import ModelVersion
from modelyard.errors import ModelyardError, NotFound
from modelyard.ui.curves import curve_events
from modelyard.ui.render import pager
from modelyard.ui.routing import Ui, UiDep, UiRoute
from modelyard.ui.sessions import PATH

router = APIRouter(prefix=f"{PATH}/models", route_class=UiRoute, include_in_schema=False)

PageNo = Annotated[int, Query(ge=1, le=10**9)]
Search = Annotated[str | None, Query(max_length=128)]
Ref = Annotated[str, Query(min_length=1, max_length=128)]
ANCESTORS = 10


@router.get("")
def models_page(ui: UiDep, q: Search = None, page: PageNo = 1, size: int = 25) -> Response:
    pages = pager(ui.request, page, size, q=q)
    rows, total = ui.platform.registry.list_models(ui.caller, pages.size, pages.offset, q)
    models = _model_out(ui.platform, list(rows))
    return ui.page("models.html", models=models, pager=pages.with_total(total), q=q)


@router.get("/{name}")
def model_page(ui: UiDep, name: str, page: PageNo = 1, size: int = 25) -> Response:
    model = _model_out(ui.platform, [ui.platform.registry.get_model(ui.caller, name)])[0]
    pages = pager(ui.request, page, size)
    versions, total = ui.platform.registry.list_versions(ui.caller, name, pages.size, pages.offset)
    return ui.page("model.html", model=model, versions=versions, pager=pages.with_total(total))


def _ancestors(ui: Ui, name: str, version: ModelVersion) -> list[tuple[str, ModelVersion]]:
    """The versions ``version`` was made from, nearest first (those the caller may read)."""
    chain: list[tuple[str, ModelVersion]] = []
    model, current = name, version
    while current.parent_version is not None and len(chain) < ANCESTORS:
        model = current.parent_model or model
        try:
            current = ui.platform.registry.get_version(
                ui.caller, model, str(current.parent_version)
            )
        except NotFound:
            break
        chain.append((model, current))
    return chain


@router.get("/{name}/versions/{ref}")
def version_page(ui: UiDep, name: str, ref: str) -> Response:
    registry = ui.platform.registry
    version = registry.get_version(ui.caller, name, ref)
    aliases = registry.aliases(ui.caller, name)
    return ui.page(
        "version.html",
        model=name,
        version=version,
        aliases=sorted(a for a, v in aliases.items() if v == version.version),
        ancestors=list(reversed(_ancestors(ui, name, version))),
        children=registry.children_of(ui.caller, name, version.version),
        job=_job_or_none(ui, version.job_id),
    )


def _job_or_none(ui: Ui, job_id: str | None) -> Any:
    if not job_id:
        return None
    try:
        return ui.platform.jobs.get(ui.caller, job_id)
    except ModelyardError:
        return None  # the job is someone else's: the version says which it was


@router.get("/{name}/compare")
async def compare_page(ui: UiDep, name: str, a: Ref, b: Ref) -> Response:
    registry = ui.platform.registry
    first = await run_in_threadpool(registry.get_version, ui.caller, name, a)
    second = await run_in_threadpool(registry.get_version, ui.caller, name, b)
    report = await run_in_threadpool(registry.compare_versions, ui.caller, name, a, b)
    curves = {}
    for version in (first, second):
        job = _job_or_none(ui, version.job_id)
        if job is not None:
            events = await run_in_threadpool(curve_events, ui.platform, ui.caller, job.id)
            curves[f"v{version.version}"] = events
    params = [_flat(v.params) for v in (first, second)]
    return ui.page(
        "compare.html",
        model=name,
        first=first,
        second=second,
        report=report,
        metric_names=sorted(set(first.metrics) | set(second.metrics)),
        params=params,
        param_names=sorted(set(params[0]) | set(params[1])),
        curves=curves,
    )


def _flat(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested parameters as dotted names (``config.optimizer.lr``), so each differs alone;
    the per-epoch history is left out (the curves show it)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if not prefix and key == "history":
            continue
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
