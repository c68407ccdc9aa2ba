"""``modelyard keys``: create, list and revoke API keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from modelyard.cli._context import connect
from modelyard.cli._output import JsonFlag, print_json, print_note, show, table
from modelyard.client import Key

app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A label for the key, e.g. 'laptop'.")],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope", "-s", help="A scope to grant: read, write, infer, keys, metrics, admin."
        ),
    ],
    expires_in_days: Annotated[
        int | None, typer.Option(min=1, help="Expire the key after this many days.")
    ] = None,
    principal: Annotated[
        str | None, typer.Option(help="Make the key for this principal (admin only).")
    ] = None,
    project: Annotated[
        str | None, typer.Option(help="Bind the key to this project: it works only there.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an API key and print its secret (shown only this once).

    The secret alone goes to stdout, so `KEY=$(modelyard keys create ci -s read)` works.
    """
    expires_at = None
    if expires_in_days is not None:
        expires_at = datetime.now(UTC) + timedelta(days=expires_in_days)
    with connect(ctx) as client:
        created = client.keys.create(
            name, scope, expires_at=expires_at, principal=principal, project=project
        )
    if as_json:
        print_json(created.raw)
        return
    owner = created.principal.name if created.principal else "you"
    print_note(
        f"[green]Created key[/] {created.name} (id {created.id}) for {owner} "
        f"with scopes {', '.join(created.scopes)}"
        + (f", expiring {created.expires_at:%Y-%m-%d %H:%M} UTC" if created.expires_at else "")
    )
    print_note("[bold yellow]Secret, shown only this once — store it now:[/]")
    typer.echo(created.key)


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List your API keys (an admin sees all keys)."""
    with connect(ctx) as client:
        keys = client.keys.list()
    if as_json:
        print_json([k.raw for k in keys])
        return
    columns = ("ID", "Name", "Prefix", "Scopes", "Principal", "Expires", "Last used", "Status")
    rows = [
        (k.id, k.name, k.prefix, k.scopes, k.principal, k.expires_at, k.last_used_at, _status(k))
        for k in keys
    ]
    show(table("API keys", columns, rows))


@app.command("revoke")
def revoke(
    ctx: typer.Context, key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id.")]
) -> None:
    """Revoke an API key; it is refused from then on."""
    with connect(ctx) as client:
        client.keys.revoke(key_id)
    print_note(f"Revoked key {key_id}")


def _status(key: Key) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
        return "expired"
    return "active"
