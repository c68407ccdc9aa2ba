"""Dependencies shared by the routers: the platform and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from modelyard.auth.access import Caller
from modelyard.platform import Platform

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer my_...`")


async def get_platform(request: Request) -> Platform:
    # async: a plain function would be run in the thread pool on every request.
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


async def get_caller(
    platform: PlatformDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The principal behind the request's API key (401 without a valid one).

    A recently seen key is answered from memory on the event loop; only a miss goes to the
    database, in the thread pool.
    """
    key = credentials.credentials if credentials else None
    caller = platform.auth.cached(key)
    if caller is not None:
        return caller
    return await run_in_threadpool(platform.auth.authenticate, key)


CallerDep = Annotated[Caller, Depends(get_caller)]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size.")]
Offset = Annotated[int, Query(ge=0, description="Items to skip.")]


async def authorize_inference(platform: Platform, caller: Caller, deployment: str) -> None:
    """The caller holds 'infer' and may read the deployment (cached; 403/404 otherwise)."""
    if not platform.deployments.may_infer_cached(caller, deployment):
        await run_in_threadpool(platform.deployments.check_infer, caller, deployment)
