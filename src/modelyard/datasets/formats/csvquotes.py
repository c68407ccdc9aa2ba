"""Following a CSV stream's quoting, to find a quoted field that is never closed.

pyarrow reads an unterminated quoted field to the end of the file and takes everything
after the quote as one value, so a file cut short, or a stray quote, would pass as one
long row. :class:`QuoteTracker` sees the bytes as they are read and says whether the
stream ended inside quotes, and on which line that quote opened.

It follows pyarrow's rules: a quote opens a quoted field only at the start of a field
(after a delimiter, a line end, or at the start of the stream), a quote elsewhere in an
unquoted field is a literal character, and inside quotes ``""`` is a literal quote while a
lone ``"`` closes the field. So only runs of an odd number of quotes change anything:
at the start of a field such a run flips the state (it opens, or, inside quotes, closes),
elsewhere it leaves the field unquoted. Runs are found with numpy a block at a time, so
tracking costs little next to parsing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_QUOTE = ord('"')
_FIELD_ENDS = (ord(","), ord("\n"), ord("\r"))
_BOM = b"\xef\xbb\xbf"


class QuoteTracker:
    """Whether the bytes seen so far end inside a quoted field (:attr:`open_line`)."""

    def __init__(self) -> None:
        self.quoted = False
        self.open_line = 0
        """Line on which the quoted field still open began; 0 when none is open."""
        self._lines = 1  # line number at the start of the next chunk
        self._prev = ord("\n")  # the byte before the next chunk: the stream starts a field
        self._head: bytes | None = b""
        # A run of quotes that reached the end of the previous chunk: length, whether it
        # began a field, and its line.
        self._run = 0
        self._run_starts_field = False
        self._run_line = 0

    def __call__(self, chunk: memoryview) -> None:
        """Follow ``chunk``, the next bytes of the stream."""
        data = bytes(chunk)
        if self._head is not None:
            # The stream's first bytes, held until it is known whether they are a BOM.
            data = self._head + data
            if len(data) < len(_BOM) and _BOM.startswith(data):
                self._head = data
                return
            self._head = None
            data = data.removeprefix(_BOM)
        if not data:
            return
        array = np.frombuffer(data, dtype=np.uint8)
        quotes = np.flatnonzero(array == _QUOTE)
        breaks = np.flatnonzero(np.diff(quotes) != 1)
        starts = quotes[np.concatenate(([0], breaks + 1))] if quotes.size else quotes
        ends = quotes[np.concatenate((breaks, [quotes.size - 1]))] + 1 if quotes.size else quotes
        if self._run:
            if starts.size and starts[0] == 0:
                first_end = int(ends[0])
                self._run += first_end
                starts, ends = starts[1:], ends[1:]
                if first_end == len(data):
                    self._advance(data)
                    return
            self._apply(self._run, self._run_starts_field, self._run_line)
            self._run = 0
        if ends.size and ends[-1] == len(data):
            self._run = int(ends[-1] - starts[-1])
            self._run_starts_field = self._starts_field(array, int(starts[-1]))
            self._run_line = self._lines + data.count(b"\n", 0, int(starts[-1]))
            starts, ends = starts[:-1], ends[:-1]
        odd = (ends - starts) % 2 == 1
        starts = starts[odd]
        if starts.size:
            before = np.where(starts > 0, array[np.maximum(starts - 1, 0)], self._prev)
            toggles = np.isin(before, _FIELD_ENDS)
            resets = np.flatnonzero(~toggles)
            if resets.size:
                self.quoted = False
                self.open_line = 0
                toggles = toggles[resets[-1] + 1 :]
                starts = starts[resets[-1] + 1 :]
            if np.count_nonzero(toggles) % 2:
                self.quoted = not self.quoted
            if self.quoted and toggles.any():
                opened = int(starts[np.flatnonzero(toggles)[-1]])
                self.open_line = self._lines + data.count(b"\n", 0, opened)
            elif not self.quoted:
                self.open_line = 0
        self._advance(data)

    def finish(self) -> None:
        """Account for a run of quotes at the very end of the stream."""
        if self._run:
            self._apply(self._run, self._run_starts_field, self._run_line)
            self._run = 0

    def _advance(self, data: bytes) -> None:
        self._lines += data.count(b"\n")
        self._prev = data[-1]

    def _starts_field(self, array: np.ndarray[Any, Any], start: int) -> bool:
        before = int(array[start - 1]) if start else self._prev
        return before in _FIELD_ENDS

    def _apply(self, length: int, starts_field: bool, line: int) -> None:
        if length % 2 == 0:
            return
        self.quoted = not self.quoted if starts_field else False
        self.open_line = line if self.quoted else 0
