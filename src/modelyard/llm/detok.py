"""Turning generated token ids into text pieces, with stop strings held back until known."""

from __future__ import annotations

from collections.abc import Callable, Sequence


class StreamDecoder:
    """Incremental detokenization of one sequence.

    Each :meth:`push` decodes the whole generated text again (so multi-token characters and
    word joins come out right) and returns what is new; text that might be the start of a
    stop string is kept back until the next tokens show whether it is one.

    >>> d = StreamDecoder(lambda ids: "".join(chr(i) for i in ids), stop=("##",))
    >>> d.push([104, 105]), d.push([104, 105, 35]), d.push([104, 105, 35, 35])
    (('hi', False), ('', False), ('', True))
    """

    def __init__(self, decode: Callable[[Sequence[int]], str], stop: tuple[str, ...]) -> None:
        self._decode = decode
        self._stop = tuple(s for s in stop if s)
        self.sent = ""

    def push(self, ids: Sequence[int]) -> tuple[str, bool]:
        """(new text, whether a stop string was reached) after ``ids`` were generated."""
        text = self._decode(ids)
        hit = min((i for i in (text.find(s) for s in self._stop) if i >= 0), default=-1)
        if hit >= 0:
            return self._emit(text[:hit]), True
        if text.endswith("\ufffd"):
            return "", False
        hold = max((_overlap(text, s) for s in self._stop), default=0)
        return self._emit(text[: len(text) - hold]), False

    def flush(self, ids: Sequence[int]) -> str:
        """Everything not sent yet (the sequence ended without a stop string)."""
        text = self._decode(ids)
        return self._emit(text.rstrip("\ufffd"))

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
