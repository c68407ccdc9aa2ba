"""``modelyard principals``: users and service accounts (admin only)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from modelyard.cli._context import connect
from modelyard.cli._output import JsonFlag, print_json, print_note, show, table

app = typer.Typer(help="Create and list principals (admin only).", no_args_is_help=True)


class Kind(StrEnum):
    """What a principal is."""

    user = "user"
    service = "service"


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The principal's unique name.")],
    kind: Annotated[Kind, typer.Option(help="A person or a service account.")] = Kind.user,
    admin: Annotated[bool, typer.Option("--admin", help="Give it admin rights.")] = False,
) -> None:
    """Create a principal; then make it a key with `modelyard keys create --principal`."""
    with connect(ctx) as client:
        principal = client.principals.create(name, kind=kind.value, is_admin=admin)
    role = "admin " if principal.is_admin else ""
    print_note(f"[green]Created {role}{principal.kind}[/] {principal.name} (id {principal.id})")


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List every principal."""
    with connect(ctx) as client:
        principals = client.principals.list()
    if as_json:
        print_json([p.raw for p in principals])
        return
    rows = [(p.id, p.name, p.kind, p.is_admin, p.created_at) for p in principals]
    show(table("Principals", ("ID", "Name", "Kind", "Admin", "Created"), rows))
