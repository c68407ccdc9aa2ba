"""``modelyard projects``: projects, their members, and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from modelyard.cli._context import connect
from modelyard.cli._output import JsonFlag, print_json, print_note, show, table
from modelyard.client import Project

app = typer.Typer(
    help="Create projects, manage their members, read the audit log.", no_args_is_help=True
)

Name = Annotated[str, typer.Argument(metavar="PROJECT", help="The project's name.")]
Who = Annotated[str, typer.Argument(metavar="PRINCIPAL", help="A principal's name.")]


def _members(project: Project) -> str:
    return ", ".join(f"{m.principal} ({m.role})" for m in project.members)


def _show(project: Project, as_json: bool) -> None:
    if as_json:
        print_json(project.raw)
        return
    columns = ("Name", "Your role", "Personal", "Members", "Description")
    row = (project.name, project.role, project.personal, _members(project), project.description)
    show(table(f"Project {project.name}", columns, [row]))


@app.command("create")
def create(
    ctx: typer.Context,
    name: Name,
    description: Annotated[str, typer.Option(help="What the project is for.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Create a project; you are its owner."""
    with connect(ctx) as client:
        project = client.projects.create(name, description)
    _show(project, as_json)


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List your projects (an admin sees every project)."""
    with connect(ctx) as client:
        projects = client.projects.list()
    if as_json:
        print_json([p.raw for p in projects])
        return
    columns = ("Name", "Your role", "Personal", "Members", "Description")
    rows = [(p.name, p.role, p.personal, _members(p), p.description) for p in projects]
    show(table("Projects", columns, rows))


@app.command("show")
def show_(ctx: typer.Context, name: Name, as_json: JsonFlag = False) -> None:
    """Show a project and its members."""
    with connect(ctx) as client:
        project = client.projects.get(name)
    _show(project, as_json)


@app.command("set-member")
def set_member(
    ctx: typer.Context,
    name: Name,
    principal: Who,
    role: Annotated[str, typer.Option(help="owner, member or viewer.")] = "member",
    as_json: JsonFlag = False,
) -> None:
    """Add a member to a project, or change its role (project owners and admins)."""
    with connect(ctx) as client:
        project = client.projects.set_member(name, principal, role)
    _show(project, as_json)


@app.command("remove-member")
def remove_member(ctx: typer.Context, name: Name, principal: Who) -> None:
    """Take a member out of a project (owners and admins; anyone may leave)."""
    with connect(ctx) as client:
        client.projects.remove_member(name, principal)
    print_note(f"Removed {principal} from project {name}")


@app.command("delete")
def delete(ctx: typer.Context, name: Name) -> None:
    """Delete an empty project, and the keys bound to it."""
    with connect(ctx) as client:
        client.projects.delete(name)
    print_note(f"Deleted project {name}")


@app.command("audit")
def audit(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option(help="Only this project's entries.")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this principal's changes.")] = None,
    action: Annotated[
        str | None, typer.Option(help="An action, or a prefix ending in '.' (project.).")
    ] = None,
    since: Annotated[datetime | None, typer.Option(help="From this time (ISO 8601, UTC).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Read the audit log: every entry with an admin key, else your projects' entries."""
    with connect(ctx) as client:
        entries = client.projects.audit(project=project, actor=actor, action=action, start=since)
    if as_json:
        print_json([{**e.__dict__, "at": e.at.isoformat()} for e in entries])
        return
    columns = ("When", "Who", "Project", "Action", "Resource", "Detail")
    rows = [(e.at, e.principal, e.project, e.action, e.resource, e.detail) for e in entries]
    show(table("Audit log", columns, rows))
