"""Reading option values that carry JSON."""

from __future__ import annotations

import json
from typing import Any

import typer


def json_object(text: str, option: str) -> dict[str, Any]:
    """``text`` decoded as a JSON object; a usage error naming ``option`` otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint=option) from None
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object, {...}", param_hint=option)
    return value
