"""Rules for the names users give to data sets, models and aliases."""

from __future__ import annotations

import re

from modelyard.errors import InvalidInput

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_NAME = re.compile(NAME_PATTERN)


def check_name(value: str, what: str) -> str:
    """Return ``value`` if it is a valid resource name, else raise 422 saying why."""
    if not _NAME.match(value):
        raise InvalidInput(
            f"{what} '{value}' is not a valid name: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if value.isdigit():
        raise InvalidInput(f"{what} '{value}' must not be only digits")
    return value
