"""Tables, JSON and progress bars: everything the CLI prints goes through here.

Consoles are made per call, not at import, so nothing reads the terminal or the
environment until a command runs. Tables and results go to stdout; progress bars,
confirmations and errors to stderr, so stdout stays clean for pipes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from modelyard.client import Owner, ProgressCallback

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
"""The ``--json`` option of list and show commands."""


def stdout() -> Console:
    """A console on standard output."""
    return Console()


def stderr() -> Console:
    """A console on standard error."""
    return Console(stderr=True)


def print_error(message: str) -> None:
    """Print ``message`` in red on stderr, verbatim (no rich markup, no wrapping)."""
    stderr().print(message, style="red", markup=False, highlight=False, soft_wrap=True)


def print_note(message: str) -> None:
    """Print a confirmation on stderr (rich markup allowed)."""
    stderr().print(message, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout, for machines (``--json``)."""
    typer.echo(json.dumps(data, indent=2, default=str))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A table with ``columns`` whose cells are rendered with :func:`cell`.

    An ``ID`` column is never shortened: ids are copied into other commands.
    """
    cells = [[cell(value) for value in row] for row in rows]
    result = Table(title=title, title_justify="left", header_style="bold")
    for i, column in enumerate(columns):
        if column == "ID":
            widest = max((len(row[i]) for row in cells), default=0)
            result.add_column(column, no_wrap=True, min_width=widest)
        else:
            result.add_column(column)
    for row in cells:
        result.add_row(*row)
    return result


def details(pairs: Mapping[str, Any]) -> Table:
    """A two-column ``field: value`` table for one object."""
    result = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    result.add_column(style="bold")
    result.add_column()
    for key, value in pairs.items():
        result.add_row(key, cell(value))
    return result


def show(*renderables: Table) -> None:
    """Print tables on stdout, a blank line between them."""
    console = stdout()
    for i, renderable in enumerate(renderables):
        if i:
            console.print()
        console.print(renderable)


def cell(value: Any) -> str:
    """How one value reads in a table."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, Owner):
        return value.name
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items()) or "-"
    return str(value)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def human_size(size: int | None) -> str:
    """``1536`` → ``1.5 KiB``."""
    if size is None:
        return "-"
    if size < 1024:
        return f"{size} B"
    amount = size / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if amount < 1024:
            return f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"


@contextmanager
def transfer_progress(description: str) -> Iterator[ProgressCallback]:
    """A progress bar on stderr; yields the callback to hand to the SDK."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    console = stderr()
    # A transient bar still leaves a blank line behind where no terminal can erase it.
    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update
