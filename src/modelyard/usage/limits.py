"""Requests and tokens per minute, per key and per project, counted with ``limits``.

:class:`LimitBook` keeps every row of ``usage_limits`` in memory (reloaded every
``limits_cache_s``), so the hot path reads no database. :class:`RateLimiter` counts with the
``limits`` library's sliding-window counters, in Redis when ``MODELYARD_REDIS_URL`` is set (so
every server process sharing it counts together) and in this process's memory otherwise.

A request is admitted only if every limit that applies admits it — the key's and its
project's, for all deployments and for the one called: the stricter wins. Token limits are
charged up front (prompt tokens plus ``max_tokens``) and corrected when the reply ends.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from sqlalchemy import select

from modelyard.db.engine import Database
from modelyard.db.tables import UsageLimit

log = logging.getLogger("modelyard.usage")

ALL = "*"
REQUESTS, TOKENS = "requests", "tokens"


@dataclass(frozen=True)
class Rate:
    """One limit that applies to a request: who it limits, on what, and how much."""

    kind: str  # REQUESTS or TOKENS
    scope: str  # "key" or "project"
    subject: str
    deployment: str
    amount: int

    @property
    def item(self) -> RateLimitItem:
        return _item(self.amount)

    @property
    def identifiers(self) -> tuple[str, ...]:
        return (self.kind, self.scope, self.subject, self.deployment)

    def describe(self) -> str:
        where = "" if self.deployment == ALL else f" on deployment '{self.deployment}'"
        return f"the {self.scope}'s limit of {self.amount} {self.kind} per minute{where}"


_ITEMS: dict[int, RateLimitItem] = {}


def _item(amount: int) -> RateLimitItem:
    found = _ITEMS.get(amount)
    if found is None:
        found = _ITEMS[amount] = RateLimitItemPerMinute(amount, namespace="MY")
    return found


@dataclass
class Snapshot:
    """Every limit row, as ``(scope, subject) -> {deployment: row}``."""

    rows: dict[tuple[str, str], dict[str, UsageLimit]] = field(default_factory=dict)
    loaded_at: float = 0.0
    # The rates of each (key, project, deployment) asked for, made once per snapshot.
    rates: dict[tuple[str, str | None, str | None], list[Rate]] = field(default_factory=dict)


class LimitBook:
    """The limits of every key and project, read from the store at most every ``ttl`` s."""

    def __init__(self, db: Database, ttl: float) -> None:
        self._db = db
        self._ttl = ttl
        self._snapshot = Snapshot()
        self._loading = threading.Lock()

    def reload(self) -> None:
        """Read every limit now (also right after this server changed one)."""
        with self._db.session() as session:
            rows = session.scalars(select(UsageLimit)).all()
        found: dict[tuple[str, str], dict[str, UsageLimit]] = {}
        for row in rows:
            found.setdefault((row.scope, row.subject_id), {})[row.deployment] = row
        self._snapshot = Snapshot(found, time.monotonic())

    def refresh_if_stale(self) -> None:
        """Reload when the copy in memory is older than the TTL (from a background thread)."""
        if time.monotonic() - self._snapshot.loaded_at < self._ttl:
            return
        if self._loading.acquire(blocking=False):
            try:
                self.reload()
            finally:
                self._loading.release()

    def row(self, scope: str, subject: str | None, deployment: str = ALL) -> UsageLimit | None:
        if subject is None:
            return None
        rows = self._snapshot.rows.get((scope, subject))
        return rows.get(deployment) if rows else None

    def rates(self, key_id: str, project_id: str | None, deployment: str | None) -> list[Rate]:
        """The request and token limits that apply to a call of ``deployment``."""
        book = self._snapshot
        snapshot = book.rows
        if not snapshot:
            return []
        cached = book.rates.get((key_id, project_id, deployment))
        if cached is not None:
            return cached
        found: list[Rate] = []
        wheres = (ALL,) if deployment in (None, ALL) else (ALL, deployment)
        for scope, subject in (("key", key_id), ("project", project_id)):
            if subject is None:
                continue
            rows = snapshot.get((scope, subject))
            if not rows:
                continue
            for where in wheres:
                row = rows.get(where)
                if row is None:
                    continue
                if row.requests_per_minute is not None:
                    found.append(Rate(REQUESTS, scope, subject, where, row.requests_per_minute))
                if row.tokens_per_minute is not None:
                    found.append(Rate(TOKENS, scope, subject, where, row.tokens_per_minute))
        if len(book.rates) < 100_000:
            book.rates[(key_id, project_id, deployment)] = found
        return found


@dataclass(frozen=True)
class WindowState:
    """Where one limit stands: its amount, what is left, and seconds until it frees up."""

    limit: int
    remaining: int
    reset_s: float


def duration(seconds: float) -> str:
    """A duration as OpenAI writes it in ``x-ratelimit-reset-*``: ``1s``, ``6m0s``, ``12ms``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    minutes, secs = divmod(whole, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def rate_headers(states: dict[str, WindowState]) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` headers."""
    headers: dict[str, str] = {}
    for kind, state in states.items():
        headers[f"x-ratelimit-limit-{kind}"] = str(state.limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, state.remaining))
        headers[f"x-ratelimit-reset-{kind}"] = duration(state.reset_s)
    return headers


# Limits this large are counted in memory between synchronisations while less than
# LOCAL_FRACTION used: no round trip to the store on most requests. Between synchronisations
# every process may take up to that fraction, so a burst larger than the rest of the limit
# within one SYNC_S can overshoot it; smaller limits, and limits more used, are exact.
LOCAL_MIN = 1000
LOCAL_FRACTION = 0.5
SYNC_S = 0.1
FRESH_S = 1.0


@dataclass
class _Local:
    used: float = 0.0  # the store's count at the last synchronisation
    pending: int = 0  # taken (or given back) here since, not yet sent
    reset_at: float = 0.0
    synced_at: float = 0.0
    used_at: float = field(default_factory=time.monotonic)


class RateLimiter:
    """Sliding-window counters of the ``limits`` library, in Redis or in memory.

    The storage is made in the event loop that first uses it (the Redis client's connections
    belong to one loop), and made again if another loop calls (test clients start their own).
    A counter store out of reach admits the request and logs a warning: limits fail open.
    """

    def __init__(self, redis_url: str | None, prefix: str) -> None:
        self._redis_url = redis_url
        self._prefix = prefix
        self._storage: Storage | None = None
        self._strategy: SlidingWindowCounterRateLimiter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warned = 0.0
        self._local: dict[Rate, _Local] = {}
        self._syncing: asyncio.Task[None] | None = None

    @property
    def backend(self) -> str:
        return "redis" if self._redis_url else "memory"

    def _limiter(self) -> SlidingWindowCounterRateLimiter:
        loop = asyncio.get_running_loop()
        if self._strategy is None or loop is not self._loop:
            self._local.clear()
            self._syncing = None
            if self._redis_url:
                uri = self._redis_url
                if not uri.startswith("async+"):
                    uri = "async+" + uri
                storage = storage_from_string(
                    uri, key_prefix=self._prefix, implementation="redispy"
                )
                assert isinstance(storage, Storage)
            else:
                storage = MemoryStorage()
            self._storage = storage
            self._strategy = SlidingWindowCounterRateLimiter(storage)
            self._loop = loop
        return self._strategy

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned > 10:
            self._warned = now
            log.warning("the rate-limit store is out of reach, admitting requests: %s", exc)

    async def hit(self, rate: Rate, cost: int) -> bool:
        """Take ``cost`` from the limit if it has room; False (nothing taken) if not.

        A limit of at least :data:`LOCAL_MIN` that is less than half used (as of its last
        synchronisation, at most :data:`FRESH_S` ago, plus what this process took since) is
        taken from in memory, and the counter store learns of it within :data:`SYNC_S`;
        otherwise the store decides, exactly, in one round trip.
        """
        if cost <= 0:
            return True
        local = self._local.get(rate)
        if local is not None:
            local.used_at = time.monotonic()
        if (
            local is not None
            and rate.amount >= LOCAL_MIN
            and time.monotonic() - local.synced_at < FRESH_S
            and local.used + local.pending + cost <= rate.amount * LOCAL_FRACTION
        ):
            local.pending += cost
            self._ensure_sync()
            return True
        taken = await self._hit_exact(rate, cost)
        if taken and rate.amount >= LOCAL_MIN:
            await self._refresh(rate)
        return taken

    async def _hit_exact(self, rate: Rate, cost: int) -> bool:
        try:
            return await self._limiter().hit(rate.item, *rate.identifiers, cost=cost)
        except Exception as exc:
            self._failed(exc)
            return True

    async def state(self, rate: Rate) -> WindowState:
        """Where the limit stands: from memory while it is counted locally, else the store."""
        local = self._local.get(rate)
        if local is None and rate.amount >= LOCAL_MIN:
            await self._refresh(rate)  # then followed in memory while it is used
            local = self._local.get(rate)
        now = time.monotonic()
        if local is not None and now - local.synced_at < FRESH_S:
            local.used_at = now
            remaining = int(rate.amount - local.used - local.pending)
            return WindowState(rate.amount, remaining, max(0.0, local.reset_at - now))
        return await self._state_exact(rate)

    async def _state_exact(self, rate: Rate) -> WindowState:
        try:
            stats = await self._limiter().get_window_stats(rate.item, *rate.identifiers)
        except Exception as exc:
            self._failed(exc)
            return WindowState(rate.amount, rate.amount, 0.0)
        return WindowState(
            rate.amount, int(stats.remaining), max(0.0, stats.reset_time - time.time())
        )

    async def adjust(self, rate: Rate, delta: int) -> None:
        """Add ``delta`` (negative: give back) to the limit's current window, never below 0;
        how a token charge is corrected once the reply's real length is known."""
        if delta == 0:
            return
        local = self._local.get(rate)
        if local is not None and time.monotonic() - local.synced_at < FRESH_S:
            local.pending += delta
            self._ensure_sync()
            return
        await self._adjust_exact(rate, delta)

    async def _adjust_exact(self, rate: Rate, delta: int) -> None:
        try:
            limiter = self._limiter()
            key = rate.item.key_for(*rate.identifiers)
            expiry = rate.item.get_expiry()
            storage = limiter.storage
            if isinstance(storage, MemoryStorage):
                _, current = storage.sliding_window_keys(key, expiry, time.time())
                if delta > 0:
                    await storage.incr(current, 2 * expiry, amount=delta)
                else:
                    await storage.decr(current, -delta)
            else:
                await _redis_adjust(storage, key, expiry, delta)
        except Exception as exc:
            self._failed(exc)

    async def _refresh(self, rate: Rate) -> None:
        """Read the limit's count from the store (after sending what was taken locally)."""
        local = self._local.get(rate)
        if local is None:
            local = self._local[rate] = _Local()
        pending, local.pending = local.pending, 0
        if pending:
            await self._adjust_exact(rate, pending)
        state = await self._state_exact(rate)
        now = time.monotonic()
        local.used = rate.amount - state.remaining
        local.reset_at = now + state.reset_s
        local.synced_at = now
        self._ensure_sync()

    def _ensure_sync(self) -> None:
        if self._syncing is None or self._syncing.done():
            self._syncing = asyncio.get_running_loop().create_task(self._sync())

    async def _sync(self) -> None:
        """Send what was taken in memory, and read the counts back, every SYNC_S while any
        limit is counted locally; a limit not used for FRESH_S is dropped from memory."""
        while self._local:
            await asyncio.sleep(SYNC_S)
            now = time.monotonic()
            for rate, local in list(self._local.items()):
                if not local.pending and now - local.used_at > FRESH_S:
                    del self._local[rate]
                    continue
                await self._refresh(rate)

    async def clear(self, rates: Iterable[Rate]) -> None:
        limiter = self._limiter()
        for rate in rates:
            await limiter.clear(rate.item, *rate.identifiers)


# Adds to the current window's counter of a sliding window (never below zero); a key that
# does not exist yet is made with the window's lifetime, as the library makes it.
_ADJUST = """
local current = tonumber(redis.call('get', KEYS[1]) or '0')
local value = current + tonumber(ARGV[1])
if value < 0 then value = 0 end
local ttl = redis.call('pttl', KEYS[1])
if ttl > 0 then
  redis.call('set', KEYS[1], value, 'PX', ttl)
elseif value > 0 then
  redis.call('set', KEYS[1], value, 'PX', tonumber(ARGV[2]) * 2000)
end
return value
"""


async def _redis_adjust(storage: Any, key: str, expiry: int, delta: int) -> None:
    current = storage._current_window_key(key)
    bridge = storage.bridge
    connection = bridge.get_connection()
    await connection.eval(_ADJUST, 1, bridge.prefixed_key(current), delta, expiry)


__all__ = ["ALL", "REQUESTS", "TOKENS", "LimitBook", "Rate", "RateLimiter", "WindowState"]
