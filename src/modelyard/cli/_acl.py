"""``modelyard datasets acl`` and ``modelyard models acl``: show or change who may use it."""

# No ``from __future__ import annotations`` here: typer reads the command's annotations at
# run time, and those of ``acl`` name ``noun`` from the enclosing function.
from collections.abc import Callable, Iterable
from typing import Annotated, Protocol

import typer

from modelyard.cli._context import connect
from modelyard.cli._output import JsonFlag, details, print_json, show, table
from modelyard.client import ACL, Client, Grant, GrantLike

PERMISSIONS = ("read", "write")


class _Shared(Protocol):
    def get_acl(self, name: str) -> ACL: ...

    def set_acl(self, name: str, public: bool = False, grants: Iterable[GrantLike] = ()) -> ACL: ...


def acl_command(noun: str, resource: Callable[[Client], _Shared]) -> Callable[..., None]:
    """The ``acl`` command of a resource group (``noun``: 'data set' or 'model')."""

    def acl(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help=f"The {noun}'s name.")],
        public: Annotated[
            bool | None,
            typer.Option(
                "--public/--private",
                help="Let every principal read it, or only the owner and the grants.",
                show_default=False,
            ),
        ] = None,
        grant: Annotated[
            list[str] | None,
            typer.Option(
                metavar="PRINCIPAL:PERMISSION",
                help="Give a principal 'read' or 'write' (repeatable), e.g. bob:read.",
            ),
        ] = None,
        revoke: Annotated[
            list[str] | None,
            typer.Option(metavar="PRINCIPAL", help="Take a principal's grant away (repeatable)."),
        ] = None,
        as_json: JsonFlag = False,
    ) -> None:
        added = [_parse_grant(g) for g in grant or ()]
        with connect(ctx) as client:
            shared = resource(client)
            acl = shared.get_acl(name)
            if public is not None or added or revoke:
                # The server replaces the whole ACL, so change the current one and send it.
                dropped = set(revoke or ()) | {g.principal for g in added}
                grants = [g for g in acl.grants if g.principal not in dropped] + added
                acl = shared.set_acl(
                    name, public=acl.public if public is None else public, grants=grants
                )
        if as_json:
            print_json(acl.raw)
            return
        rows = [(g.principal, g.permission) for g in acl.grants]
        show(
            details({"Name": name, "Public": acl.public}),
            table("Grants", ("Principal", "Permission"), rows),
        )

    acl.__doc__ = (
        f"Show who may use a {noun}; with options, change it (the owner and admins always may)."
    )
    return acl


def _parse_grant(value: str) -> Grant:
    principal, sep, permission = value.rpartition(":")
    if not sep:
        principal, permission = value, "read"
    if not principal or permission not in PERMISSIONS:
        raise typer.BadParameter(
            f"{value!r}: expected PRINCIPAL:read or PRINCIPAL:write", param_hint="--grant"
        )
    return Grant(principal=principal, permission=permission)
