"""Dependencies shared by the routers: the platform and the authenticated caller."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from modelyard.api.gate import CALLER_KEY
from modelyard.auth.access import Caller
from modelyard.errors import Unauthenticated
from modelyard.platform import Platform

# Declares the scheme in the OpenAPI document; the gate checks the key.
bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer my_...`")


async def get_platform(request: Request) -> Platform:
    # async: a plain function would be run in the thread pool on every request.
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


def caller_of(scope: MutableMapping[str, Any]) -> Caller:
    """The principal behind the request's API key, as the gate authenticated it (before the
    body was read; see :mod:`modelyard.api.gate`); 401 when the request had none."""
    caller: Caller | None = scope.get(CALLER_KEY)
    if caller is None:
        raise Unauthenticated("an API key is required: send 'Authorization: Bearer <key>'")
    return caller


async def get_caller(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The caller of :func:`caller_of`, as a dependency (which also declares the bearer
    scheme in the OpenAPI document)."""
    return caller_of(request.scope)


CallerDep = Annotated[Caller, Depends(get_caller)]
INT64_MAX = 2**63 - 1
Limit = Annotated[int, Query(ge=1, le=500, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=INT64_MAX, description="Items to skip.")]


async def authorize_inference(platform: Platform, caller: Caller, deployment: str) -> None:
    """The caller holds 'infer' and may read the deployment (cached; 403/404 otherwise)."""
    await platform.deployment_facade.authorize(caller, deployment)
