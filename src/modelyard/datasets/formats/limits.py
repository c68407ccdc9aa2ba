"""How far one intake may go, checked while the upload is read.

A compressed upload can expand far beyond its own size: a 1 MB ``.jsonl.gz`` can hold a
1 GiB line, a 2 MB NPZ a 2 GiB array. So sizes are counted on the bytes as they are
decompressed and decoded, or taken from what a header declares before any data is
written, never from the upload's own size. Every refusal is a PayloadTooLarge that names
the limit and the setting that raises it.

    >>> guard = IntakeGuard(IntakeLimits(max_bytes=1000), upload_bytes=100)
    >>> guard.expand(800, "the CSV file")
    >>> guard.expand(800, "the CSV file")
    Traceback (most recent call last):
      ...
    modelyard.errors.PayloadTooLarge: the CSV file expands to at least 1600 bytes, more than \
the 1000 this server accepts (MODELYARD_MAX_DATASET_BYTES)
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from modelyard.errors import PayloadTooLarge

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from modelyard.config import Settings

# The expansion ratio is only enforced beyond this many expanded bytes: small uploads of
# very regular data (an all-zero mask, a constant column) compress far better than 200:1
# and cost little however well they compress.
EXPANSION_GRACE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class IntakeLimits:
    """What one data set upload may expand to; ``None`` is no limit.

    The server builds them from its settings (:meth:`from_settings`).
    """

    max_bytes: int | None = None
    """Expanded size: decompressed CSV or JSONL text, decoded Parquet values, array data."""
    max_rows: int | None = None
    """Rows of a table, first dimension of arrays."""
    max_columns: int | None = None
    """Columns of a table, arrays of an NPZ archive."""
    max_line_bytes: int | None = None
    """Longest JSON Lines line, its newline included."""
    max_json_depth: int | None = None
    """Deepest nesting of arrays and objects in a JSON Lines value."""
    max_expansion: float | None = None
    """Largest ratio of expanded size to upload size, beyond ``expansion_grace_bytes``."""
    expansion_grace_bytes: int = EXPANSION_GRACE_BYTES
    """Expanded bytes allowed whatever the ratio."""
    timeout_s: float | None = None
    """Wall-clock seconds one intake may take."""

    @classmethod
    def from_settings(cls, settings: Settings) -> IntakeLimits:
        """The limits a server with ``settings`` holds uploads to."""
        return cls(
            max_bytes=settings.max_dataset_bytes,
            max_rows=settings.max_dataset_rows,
            max_columns=settings.max_dataset_columns,
            max_line_bytes=settings.max_dataset_line_bytes,
            max_json_depth=settings.max_dataset_json_depth,
            max_expansion=settings.max_dataset_expansion,
            timeout_s=settings.dataset_intake_timeout_s,
        )


class IntakeGuard:
    """One intake's account of what it has expanded, refused as soon as a limit is passed.

    ``upload_bytes`` is the size of the upload as received, which the expansion ratio is
    measured against; ``clock`` gives the seconds the time budget is counted in.
    """

    def __init__(
        self,
        limits: IntakeLimits,
        upload_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.upload_bytes = upload_bytes
        self.expanded = 0
        self._clock = clock
        self._deadline = None if limits.timeout_s is None else clock() + limits.timeout_s

    def check_time(self) -> None:
        """Refuse once the intake has used up its time budget."""
        if self._deadline is not None and self._clock() >= self._deadline:
            raise PayloadTooLarge(
                f"the upload could not be taken in within {self.limits.timeout_s:g} s, "
                "the most this server spends on one data set "
                "(MODELYARD_DATASET_INTAKE_TIMEOUT_S)"
            )

    def expand(self, size: int, what: str) -> None:
        """Count ``size`` more expanded bytes of ``what``, then check size, ratio and time."""
        self.expanded += size
        self._check_size(self.expanded, what, exact=False)
        self.check_time()

    def check_declared(self, size: int, what: str) -> None:
        """Refuse ``what`` if it declares ``size`` expanded bytes, before any is written."""
        self._check_size(size, what, exact=True)

    def check_rows(self, rows: int, what: str) -> None:
        """Refuse ``what`` once it holds more rows than the limit."""
        limit = self.limits.max_rows
        if limit is not None and rows > limit:
            raise PayloadTooLarge(
                f"{what} holds more than {limit} rows, the most this server accepts "
                "(MODELYARD_MAX_DATASET_ROWS)"
            )

    def check_columns(self, columns: int, what: str, noun: str = "columns") -> None:
        """Refuse ``what`` if it has more columns (or arrays: ``noun``) than the limit."""
        limit = self.limits.max_columns
        if limit is not None and columns > limit:
            raise PayloadTooLarge(
                f"{what} has more than {limit} {noun}, the most this server accepts "
                "(MODELYARD_MAX_DATASET_COLUMNS)"
            )

    def _check_size(self, size: int, what: str, *, exact: bool) -> None:
        limits = self.limits
        amount = f"{size} bytes" if exact else f"at least {size} bytes"
        if limits.max_bytes is not None and size > limits.max_bytes:
            raise PayloadTooLarge(
                f"{what} expands to {amount}, more than the {limits.max_bytes} this server "
                "accepts (MODELYARD_MAX_DATASET_BYTES)"
            )
        ratio = limits.max_expansion
        if (
            ratio is not None
            and size > limits.expansion_grace_bytes
            and size > ratio * self.upload_bytes
        ):
            raise PayloadTooLarge(
                f"{what} expands to {amount} from a {self.upload_bytes}-byte upload, more "
                f"than the {ratio:g} times its size this server accepts "
                "(MODELYARD_MAX_DATASET_EXPANSION)"
            )


class Observer(Protocol):
    """Sees every chunk of a guarded stream, in order."""

    def __call__(self, chunk: memoryview, /) -> None: ...


class GuardedStream(io.RawIOBase):
    """A binary stream read under ``guard``: time checked, bytes counted as expanded.

    With ``count`` false only the time is checked (a second pass over bytes already
    counted). ``observe``, when given, sees every chunk read.
    """

    def __init__(
        self,
        inner: io.BufferedIOBase,
        guard: IntakeGuard,
        what: str,
        *,
        count: bool = True,
        observe: Observer | None = None,
    ) -> None:
        super().__init__()
        self._inner = inner
        self._guard = guard
        self._what = what
        self._count = count
        self._observe = observe

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        size = self._inner.readinto(view)
        if size:
            if self._observe is not None:
                self._observe(view[:size])
            if self._count:
                self._guard.expand(size, self._what)
            else:
                self._guard.check_time()
        return size

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            super().close()


def guarded(
    inner: io.BufferedIOBase,
    guard: IntakeGuard,
    what: str,
    *,
    count: bool = True,
    observe: Observer | None = None,
    buffer_size: int = 1024 * 1024,
) -> io.BufferedReader:
    """``inner`` read under ``guard`` (see :class:`GuardedStream`), buffered for ``readline``."""
    raw = GuardedStream(inner, guard, what, count=count, observe=observe)
    return io.BufferedReader(raw, buffer_size)
