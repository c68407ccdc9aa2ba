"""Who am I, principals and API keys."""

from __future__ import annotations

from fastapi import APIRouter, Response

from modelyard.api.deps import CallerDep, Limit, Offset, PlatformDep
from modelyard.api.schemas.auth import (
    KeyCreate,
    KeyCreated,
    KeyOut,
    PrincipalCreate,
    PrincipalOut,
    WhoAmI,
)
from modelyard.api.schemas.common import Page

router = APIRouter(prefix="/api/v1", tags=["keys"])


@router.get("/whoami", response_model=WhoAmI, summary="The principal and key behind this call")
def whoami(platform: PlatformDep, caller: CallerDep) -> WhoAmI:
    key = platform.auth.current_key(caller)
    return WhoAmI(principal=PrincipalOut.model_validate(key.principal), key=KeyOut.of(key))


@router.post("/principals", status_code=201, response_model=PrincipalOut)
def create_principal(
    body: PrincipalCreate, platform: PlatformDep, caller: CallerDep
) -> PrincipalOut:
    row = platform.auth.create_principal(caller, body.name, body.kind, body.is_admin)
    return PrincipalOut.model_validate(row)


@router.get("/principals", response_model=Page[PrincipalOut])
def list_principals(
    platform: PlatformDep, caller: CallerDep, limit: Limit = 100, offset: Offset = 0
) -> Page[PrincipalOut]:
    rows = platform.auth.list_principals(caller)
    items = [PrincipalOut.model_validate(r) for r in rows[offset : offset + limit]]
    return Page[PrincipalOut](items=items, total=len(rows))


@router.post("/keys", status_code=201, response_model=KeyCreated, summary="Issue an API key")
def create_key(body: KeyCreate, platform: PlatformDep, caller: CallerDep) -> KeyCreated:
    new = platform.auth.create_key(
        caller, body.name, body.scopes, body.expires_at, body.principal, body.project
    )
    return KeyCreated(**KeyOut.of(new.record).model_dump(), key=new.secret)


@router.get("/keys", response_model=Page[KeyOut])
def list_keys(
    platform: PlatformDep, caller: CallerDep, limit: Limit = 100, offset: Offset = 0
) -> Page[KeyOut]:
    rows = platform.auth.list_keys(caller)
    return Page[KeyOut](
        items=[KeyOut.of(k) for k in rows[offset : offset + limit]], total=len(rows)
    )


@router.delete("/keys/{key_id}", status_code=204, response_class=Response, summary="Revoke a key")
def revoke_key(key_id: str, platform: PlatformDep, caller: CallerDep) -> Response:
    platform.auth.revoke_key(caller, key_id)
    return Response(status_code=204)
