"""Access answers remembered briefly, renewed by one caller before they expire.

The inference hot path asks who a key belongs to and whether it may call a deployment on every
request; the answers come from the database and are remembered for a few seconds. Had they
all expired at once, every request in flight would have looked its answer up again at the
same moment (64 database queries at concurrency 64, every few seconds, each holding the GIL
for a millisecond or two: a stall that every request in flight waited out). Instead, once half
of an answer's time has passed, the first caller to read it is told to look it up again while
everyone else keeps the remembered answer::

    cache = AnswerCache[str, Caller](ttl_s=5.0)
    caller = cache.get(digest)        # None: look it up (unknown, expired or due for renewal)
    if caller is None:
        caller = lookup(digest)
        cache.put(digest, caller)

An answer is never used longer than ``ttl_s`` after it was looked up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class AnswerCache(Generic[K, V]):
    """Answers by key for ``ttl_s`` seconds, renewed by one caller past half of that."""

    def __init__(
        self,
        ttl_s: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        # key -> (answer, renew at, expires at); renew at is None once a caller renews it.
        self._entries: dict[K, tuple[V, float | None, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The answer for ``key``, or None when the caller must look it up and :meth:`put` it:
        none is remembered, it expired, or it is due for renewal and no one renews it yet."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            answer, renew_at, expires_at = entry
            if now >= expires_at:
                return None
            if renew_at is not None and now >= renew_at:
                self._entries[key] = (answer, None, expires_at)
                return None
            return answer

    def fresh(self, key: K) -> V | None:
        """The answer for ``key`` if it is not yet due for renewal (never claims a renewal)."""
        entry = self._entries.get(key)
        if entry is None or entry[1] is None or self._clock() >= entry[1]:
            return None
        return entry[0]

    def put(self, key: K, answer: V) -> None:
        """Remember ``answer`` for ``key`` for ``ttl_s`` seconds from now."""
        if self.ttl_s <= 0:
            return
        now = self._clock()
        with self._lock:
            if len(self._entries) >= self.max_entries and key not in self._entries:
                self._entries.clear()
            self._entries[key] = (answer, now + self.ttl_s / 2, now + self.ttl_s)

    def drop(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def drop_where(self, unwanted: Callable[[K, V], bool]) -> None:
        """Forget every answer for which ``unwanted(key, answer)`` holds."""
        with self._lock:
            self._entries = {k: e for k, e in self._entries.items() if not unwanted(k, e[0])}

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


__all__ = ["AnswerCache"]
