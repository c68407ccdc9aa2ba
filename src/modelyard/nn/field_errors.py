"""Turn pydantic validation errors into one :class:`InvalidInput` that names each field.

A caller reads ``spec.hidden[1]: must be > 0`` rather than pydantic's location tuples, and
the API passes the same list on as ``errors`` in the problem+json body.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from modelyard.errors import InvalidInput

# A custom validator names the field it rejects by starting its message with "field: ".
_FIELD_PREFIX = re.compile(r"^([A-Za-z_][\w.\[\]]*): (.*)$", re.DOTALL)

_MESSAGES: dict[str, str] = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "too_short": "must have at least {min_length} item(s)",
    "too_long": "must have at most {max_length} item(s)",
    "string_pattern_mismatch": "must match {pattern}",
}


def join_path(root: str, loc: Sequence[int | str]) -> str:
    """``("hidden", 1)`` under ``spec`` becomes ``spec.hidden[1]``."""
    path = root
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def _message(error: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = ctx.get("expected_tags", "")
        return f"must be one of {tags}" if kind == "union_tag_invalid" else "is required"
    template = _MESSAGES.get(kind)
    if template is not None:
        try:
            return template.format(**ctx)
        except (KeyError, IndexError):
            return template
    message = str(error["msg"])
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def invalid_input(
    exc: ValidationError,
    root: str,
    *,
    skip: int = 0,
    clean: Callable[[list[int | str]], list[int | str]] | None = None,
) -> InvalidInput:
    """One InvalidInput for all of ``exc``'s errors, each named by its path under ``root``.

    ``skip`` drops leading location parts pydantic adds itself (a union's tag); ``clean``,
    when given, rewrites each location (to drop tags deeper down).
    """
    found: list[dict[str, str]] = []
    for error in exc.errors():
        loc = list(error["loc"])[skip:]
        if clean is not None:
            loc = clean(loc)
        message = _message(error)
        match = _FIELD_PREFIX.match(message)
        if match is not None:
            loc.append(match.group(1))
            message = match.group(2)
        elif error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc.append(error.get("ctx", {}).get("discriminator", "").strip("'"))
        found.append({"field": join_path(root, loc), "message": message})
    detail = "; ".join(f"{item['field']}: {item['message']}" for item in found)
    return InvalidInput(detail, errors=found)
