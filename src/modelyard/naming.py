"""Rules for the names users give to data sets, models and aliases, and for version numbers."""

from __future__ import annotations

import re

from modelyard.errors import InvalidInput

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_NAME = re.compile(NAME_PATTERN)
# Version numbers are stored in 32-bit columns (PostgreSQL's INTEGER); none can be larger.
MAX_VERSION = 2**31 - 1


def check_name(value: str, what: str) -> str:
    """Return ``value`` if it is a valid resource name, else raise 422 saying why."""
    if not _NAME.fullmatch(value):
        raise InvalidInput(
            f"{what} '{value}' is not a valid name: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if value.isdigit():
        raise InvalidInput(f"{what} '{value}' must not be only digits")
    return value


def version_number(ref: str) -> int | None:
    """The number ``ref`` spells in ASCII digits, or ``None`` when it is a name.

    Other digits that Python reads as numbers (``"³"``, ``"٣"``) are names, not numbers::

        >>> version_number("3"), version_number("production"), version_number("³")
        (3, None, None)
    """
    return int(ref) if ref.isascii() and ref.isdigit() else None
