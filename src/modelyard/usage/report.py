"""Usage and costs read back in buckets (the shape of OpenAI's usage and costs APIs), and the
roll-up that keeps ``usage_records`` bounded.

Rows are written minute-aligned with ``width`` 0 (one per group and write); after ten minutes
the rows of one minute are merged into one (``width`` 60), after ``usage_minute_days`` into
hours, after ``usage_hour_days`` into days. Each merge deletes the rows it reads with
``DELETE … RETURNING``, so servers rolling up at once never count a row twice. A bucket
narrower than the rows stored for its time holds those rows' sums at their start.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, or_, select

from modelyard.auth.access import Caller, Role
from modelyard.config import Prices, Settings
from modelyard.db.engine import Database
from modelyard.db.tables import ProjectMember, UsageRecord
from modelyard.errors import InvalidInput
from modelyard.usage.costs import LINE_ITEMS, line_costs

WIDTHS = {"1m": 60, "1h": 3600, "1d": 86400}
MAX_BUCKETS = {"1m": 1440, "1h": 168, "1d": 31}
# group_by value -> column, and the name of the field in a result.
GROUPS: dict[str, tuple[str, str]] = {
    "project": ("project_id", "project_id"),
    "key": ("key_id", "api_key_id"),
    "principal": ("principal_id", "principal_id"),
    "model": ("model", "model"),
    "deployment": ("deployment", "deployment"),
    "kind": ("kind", "kind"),
}
_SUMS: tuple[str, ...] = (
    "requests",
    "rows",
    "input_tokens",
    "output_tokens",
    "compute_s",
    "cpu_s",
    "gpu_s",
    "wall_s",
    "bytes_written",
)


@dataclass(frozen=True)
class Window:
    """The buckets asked for: ``[start, end)`` in ``width``-second steps."""

    start: int
    end: int
    width: int
    has_more: bool

    @classmethod
    def parse(cls, start: int, end: int | None, bucket_width: str) -> Window:
        if bucket_width not in WIDTHS:
            raise InvalidInput(f"bucket_width must be one of {list(WIDTHS)}", field="bucket_width")
        width = WIDTHS[bucket_width]
        start = start // width * width
        stop = int(time.time()) + 1 if end is None else end
        if stop <= start:
            return cls(start, start, width, False)  # nothing asked for: no bucket
        most = start + MAX_BUCKETS[bucket_width] * width
        return cls(start, min(stop, most), width, stop > most)

    def buckets(self) -> list[int]:
        return list(range(self.start, self.end, self.width))


def parse_groups(group_by: Sequence[str]) -> list[str]:
    groups: list[str] = []
    for raw in group_by:
        for name in raw.split(","):
            name = name.strip()
            if not name:
                continue
            if name not in GROUPS:
                raise InvalidInput(
                    f"group_by: one of {list(GROUPS)}, not '{name}'", field="group_by"
                )
            if name not in groups:
                groups.append(name)
    return groups


def _visible(caller: Caller) -> ColumnElement[bool] | None:
    """Rows a caller may see: an admin all; others their own and their projects' (owners)."""
    if caller.acts_as_admin:
        return None
    owned = select(ProjectMember.project_id).where(
        ProjectMember.principal_id == caller.principal_id, ProjectMember.role == Role.OWNER.value
    )
    return or_(UsageRecord.principal_id == caller.principal_id, UsageRecord.project_id.in_(owned))


def _sums(
    db: Database,
    caller: Caller,
    window: Window,
    groups: list[str],
    filters: dict[str, list[str]],
) -> dict[tuple[int, tuple[Any, ...]], dict[str, float]]:
    columns = [getattr(UsageRecord, GROUPS[g][0]) for g in groups]
    query = (
        select(
            UsageRecord.start_time,
            *columns,
            UsageRecord.status,
            *(func.sum(getattr(UsageRecord, name)) for name in _SUMS),
            func.max(UsageRecord.peak_memory_bytes),
        )
        .where(UsageRecord.start_time >= window.start, UsageRecord.start_time < window.end)
        .group_by(UsageRecord.start_time, *columns, UsageRecord.status)
    )
    visible = _visible(caller)
    if visible is not None:
        query = query.where(visible)
    for name, wanted in filters.items():
        if wanted:
            query = query.where(getattr(UsageRecord, GROUPS[name][0]).in_(wanted))
    found: dict[tuple[int, tuple[Any, ...]], dict[str, float]] = {}
    with db.session() as session:
        rows = session.execute(query).all()
    n = len(groups)
    for row in rows:
        start = int(row[0])
        bucket = window.start + (start - window.start) // window.width * window.width
        key = (bucket, tuple(row[1 : 1 + n]))
        status = row[1 + n]
        values: list[float] = [float(v or 0) for v in row[2 + n :]]
        sums = found.setdefault(key, dict.fromkeys((*_SUMS, "failed", "peak_memory_bytes"), 0.0))
        for name, value in zip(_SUMS, values, strict=False):
            sums[name] += value
        if status != "ok":
            sums["failed"] += values[0]
        sums["peak_memory_bytes"] = max(sums["peak_memory_bytes"], values[-1])
    return found


def _group_fields(groups: list[str], values: tuple[Any, ...]) -> dict[str, Any]:
    fields: dict[str, Any] = {GROUPS[g][1]: None for g in GROUPS}
    for name, value in zip(groups, values, strict=True):
        fields[GROUPS[name][1]] = value
    return fields


def _page(window: Window, results: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    data = [
        {
            "object": "bucket",
            "start_time": start,
            "end_time": start + window.width,
            "results": results.get(start, []),
        }
        for start in window.buckets()
    ]
    return {
        "object": "page",
        "data": data,
        "has_more": window.has_more,
        "next_page": str(window.end) if window.has_more else None,
    }


def usage_page(
    db: Database,
    caller: Caller,
    window: Window,
    groups: list[str],
    filters: dict[str, list[str]],
) -> dict[str, Any]:
    """``GET /api/v1/usage``: sums of requests, tokens and compute in each bucket."""
    results: dict[int, list[dict[str, Any]]] = {}
    for (bucket, values), sums in sorted(
        _sums(db, caller, window, groups, filters).items(), key=_order
    ):
        results.setdefault(bucket, []).append(
            {
                "object": "modelyard.usage.result",
                "num_model_requests": int(sums["requests"]),
                "failed_requests": int(sums["failed"]),
                "rows": int(sums["rows"]),
                "input_tokens": int(sums["input_tokens"]),
                "output_tokens": int(sums["output_tokens"]),
                "compute_seconds": round(float(sums["compute_s"]), 6),
                "cpu_seconds": round(float(sums["cpu_s"]), 6),
                "gpu_seconds": round(float(sums["gpu_s"]), 6),
                "wall_seconds": round(float(sums["wall_s"]), 6),
                "bytes_written": int(sums["bytes_written"]),
                "peak_memory_bytes": int(sums["peak_memory_bytes"]),
                **_group_fields(groups, values),
            }
        )
    return _page(window, results)


def costs_page(
    db: Database,
    caller: Caller,
    prices: Prices,
    window: Window,
    groups: list[str],
    by_line_item: bool,
    filters: dict[str, list[str]],
) -> dict[str, Any]:
    """``GET /api/v1/costs``: the price table applied to the usage in each bucket."""
    results: dict[int, list[dict[str, Any]]] = {}
    for (bucket, values), sums in sorted(
        _sums(db, caller, window, groups, filters).items(), key=_order
    ):
        costs = line_costs(prices, sums)
        items: list[tuple[str | None, float]] = (
            [(item, costs[item]) for item in LINE_ITEMS]
            if by_line_item
            else [(None, sum(costs.values()))]
        )
        for item, amount in items:
            results.setdefault(bucket, []).append(
                {
                    "object": "modelyard.costs.result",
                    "amount": {"value": round(amount, 9), "currency": prices.currency},
                    "line_item": item,
                    **_group_fields(groups, values),
                }
            )
    return _page(window, results)


def _order(entry: tuple[tuple[int, tuple[Any, ...]], Any]) -> tuple[int, tuple[str, ...]]:
    (bucket, values), _ = entry
    return bucket, tuple("" if v is None else str(v) for v in values)


# -- roll-up -------------------------------------------------------------------------------
_GROUP_COLUMNS = (
    "kind",
    "project_id",
    "key_id",
    "principal_id",
    "deployment",
    "model",
    "version",
    "job_id",
    "status",
)
_BATCH = 5000


def rollup(db: Database, now: float, settings: Settings) -> int:
    """Merge old rows into wider buckets; the number of rows merged away."""
    stages = (
        (0, 60, 600.0),
        (60, 3600, settings.usage_minute_days * 86400),
        (3600, 86400, settings.usage_hour_days * 86400),
    )
    merged = 0
    for source, target, age in stages:
        cutoff = int(now - age) // target * target
        while True:
            with db.session() as session:
                ids = session.scalars(
                    select(UsageRecord.id)
                    .where(UsageRecord.width == source, UsageRecord.start_time < cutoff)
                    .limit(_BATCH)
                ).all()
                if not ids:
                    break
                taken = (
                    session.execute(
                        delete(UsageRecord).where(UsageRecord.id.in_(ids)).returning(UsageRecord)
                    )
                    .scalars()
                    .all()
                )
                sums: dict[tuple[Any, ...], dict[str, Any]] = {}
                for row in taken:
                    start = row.start_time // target * target
                    key = (start, *(getattr(row, c) for c in _GROUP_COLUMNS))
                    mine = sums.get(key)
                    if mine is None:
                        mine = sums[key] = {
                            "start_time": start,
                            "width": target,
                            **{c: getattr(row, c) for c in _GROUP_COLUMNS},
                            **dict.fromkeys(_SUMS, 0),
                            "peak_memory_bytes": 0,
                        }
                    for name in _SUMS:
                        mine[name] += getattr(row, name)
                    mine["peak_memory_bytes"] = max(
                        mine["peak_memory_bytes"], row.peak_memory_bytes
                    )
                if sums:
                    session.execute(insert(UsageRecord), list(sums.values()))
                merged += len(taken) - len(sums)
            if len(ids) < _BATCH:
                break
    return merged


__all__ = ["GROUPS", "WIDTHS", "Window", "costs_page", "parse_groups", "rollup", "usage_page"]
