"""``modelyard projects`` and project-bound keys against a real server."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.cli.test_cli_live import CLI, admin, as_user, new_user, ok, server

__all__ = ["admin", "as_user", "server"]


def test_a_team_works_in_a_project_from_the_command_line(
    admin: CLI,
    as_user: Callable[[str], CLI],
) -> None:
    ana = as_user(new_user(admin, "ana", "read", "write", "keys"))
    new_user(admin, "bob", "read")
    created = ok(ana("projects", "create", "vision", "--description", "image models", "--json"))
    assert json.loads(created.stdout)["role"] == "owner"
    ok(ana("projects", "set-member", "vision", "bob", "--role", "viewer"))
    shown = json.loads(ok(ana("projects", "show", "vision", "--json")).stdout)
    assert shown["members"] == [
        {"principal": "ana", "role": "owner"},
        {"principal": "bob", "role": "viewer"},
    ]
    listed = ok(ana("projects", "list")).stdout
    assert "vision" in listed and "image models" in listed
    bound = ok(ana("keys", "create", "vision-ci", "-s", "read", "--project", "vision"))
    ana_vision = as_user(bound.stdout.strip())
    keys = json.loads(ok(ana("keys", "list", "--json")).stdout)
    assert {k["name"]: k["project"] for k in keys}["vision-ci"] == "vision"
    assert json.loads(ok(ana_vision("projects", "list", "--json")).stdout)[0]["name"] == "vision"
    # Refusals are clear and exit non-zero.
    refused = ana("projects", "set-member", "vision", "bob", "--role", "boss")
    assert refused.exit_code != 0 and "role" in refused.output
    assert ana("projects", "delete", "ana").exit_code != 0
    ok(ana("projects", "remove-member", "vision", "bob"))
    since = ("--since", "2020-01-01T00:00:00")
    audit = json.loads(ok(ana("projects", "audit", "--project", "vision", *since, "--json")).stdout)
    assert [e["action"] for e in audit][:2] == ["project.member.remove", "key.create"]
    ok(ana("projects", "delete", "vision"))
    assert ana_vision("projects", "list").exit_code != 0  # its key went with the project
