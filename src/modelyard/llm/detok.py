"""Turning generated token ids into text pieces, with stop strings held back until known."""

from __future__ import annotations

from collections.abc import Callable, Sequence


class StreamDecoder:
    """Incremental detokenization of one sequence.

    Each :meth:`push` decodes only the tokens since the last complete piece of text, together
    with the tokens of that piece for context (so multi-token characters and word joins come
    out as decoding the whole text would give them, at a cost that does not grow with the
    text), and returns what is new; text that might be the start of a stop string is kept
    back until the next tokens show whether it is one.

    >>> d = StreamDecoder(lambda ids: "".join(chr(i) for i in ids), stop=("##",))
    >>> d.push([104, 105]), d.push([104, 105, 35]), d.push([104, 105, 35, 35])
    (('hi', False), ('', False), ('', True))
    """

    def __init__(self, decode: Callable[[Sequence[int]], str], stop: tuple[str, ...]) -> None:
        self._decode = decode
        self._stop = tuple(s for s in stop if s)
        self.sent = ""
        self._text = ""
        """The text of ``ids[:_read]``, the tokens decoded so far."""
        self._prefix = 0
        """Where the tokens of the last piece of text start (decoded again for context)."""
        self._read = 0

    def _window(self, ids: Sequence[int]) -> tuple[str, str]:
        """The text of the last piece's tokens, and of those and the tokens after them."""
        if len(ids) < self._read:  # not the sequence pushed before: start over
            self._text, self._prefix, self._read = "", 0, 0
        before = self._decode(ids[self._prefix : self._read]) if self._read else ""
        return before, self._decode(ids[self._prefix :])

    def _decoded(self, ids: Sequence[int]) -> str:
        """The text of ``ids``, up to a character still incomplete at their end."""
        before, after = self._window(ids)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._text += after[len(before) :]
            self._prefix, self._read = self._read, len(ids)
        return self._text

    def push(self, ids: Sequence[int]) -> tuple[str, bool]:
        """(new text, whether a stop string was reached) after ``ids`` were generated."""
        text = self._decoded(ids)
        hit = min((i for i in (text.find(s) for s in self._stop) if i >= 0), default=-1)
        if hit >= 0:
            return self._emit(text[:hit]), True
        hold = max((_overlap(text, s) for s in self._stop), default=0)
        return self._emit(text[: len(text) - hold]), False

    def flush(self, ids: Sequence[int]) -> str:
        """Everything not sent yet (the sequence ended without a stop string)."""
        text = self._decoded(ids)
        if self._read < len(ids):  # a character left incomplete: what there is of it
            before, after = self._window(ids)
            text += after[len(before) :].rstrip("\ufffd")
        return self._emit(text)

    def _emit(self, text: str) -> str:
        if not text.startswith(self.sent) or len(text) <= len(self.sent):
            return ""
        new = text[len(self.sent) :]
        self.sent = text
        return new


def _overlap(text: str, stop: str) -> int:
    """Length of the longest end of ``text`` that begins ``stop``."""
    for n in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0


__all__ = ["StreamDecoder"]
