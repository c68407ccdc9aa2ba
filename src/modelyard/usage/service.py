"""The usage service: admits requests under their limits and budget, meters what they use.

Every inference route calls :meth:`UsageService.admit` before it runs the model and the
ticket's :meth:`Ticket.done` (or :meth:`Ticket.failed`) after; nothing on that path reads the
database: limits, budgets and spending are kept in memory and refreshed in the background.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update

from modelyard.auth.access import Caller
from modelyard.auth.audit import record
from modelyard.config import Prices, Settings
from modelyard.db.engine import Database
from modelyard.db.tables import (
    Budget,
    Dataset,
    Job,
    Model,
    ModelVersion,
    UsageLimit,
    UsageRecord,
)
from modelyard.errors import BudgetSpent, QuotaExceeded, RateLimited
from modelyard.usage.costs import line_costs, month_start, next_month_start
from modelyard.usage.limits import (
    ALL,
    REQUESTS,
    TOKENS,
    LimitBook,
    Rate,
    RateLimiter,
    WindowState,
    rate_headers,
)
from modelyard.usage.meter import Meter

log = logging.getLogger("modelyard.usage")

BUDGET_HEADER = "x-modelyard-budget"
ROLLUP_EVERY_S = 60.0
ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class BudgetState:
    soft_usd: float | None
    hard_usd: float | None
    spent_usd: float

    @property
    def hard_spent(self) -> bool:
        return self.hard_usd is not None and self.spent_usd >= self.hard_usd

    @property
    def soft_reached(self) -> bool:
        return self.soft_usd is not None and self.spent_usd >= self.soft_usd


class BudgetBook:
    """Every project's budget and what it spent this month, refreshed in the background."""

    def __init__(self, db: Database, prices: Prices) -> None:
        self._db = db
        self._prices = prices
        self._states: dict[str, BudgetState] = {}

    def get(self, project_id: str | None) -> BudgetState | None:
        if project_id is None or not self._states:
            return None
        return self._states.get(project_id)

    def spent(self, project_ids: Iterable[str], since: int) -> dict[str, float]:
        """What each project spent since ``since`` (unix seconds), from the stored usage."""
        wanted = list(project_ids)
        if not wanted:
            return {}
        columns = (
            func.sum(UsageRecord.requests),
            func.sum(UsageRecord.input_tokens),
            func.sum(UsageRecord.output_tokens),
            func.sum(UsageRecord.cpu_s),
            func.sum(UsageRecord.gpu_s),
        )
        with self._db.session() as session:
            found = session.execute(
                select(UsageRecord.project_id, *columns)
                .where(UsageRecord.project_id.in_(wanted), UsageRecord.start_time >= since)
                .group_by(UsageRecord.project_id)
            ).all()
        spent = dict.fromkeys(wanted, 0.0)
        for project, requests, inputs, outputs, cpu, gpu in found:
            if project is None:
                continue
            sums = {
                "requests": requests or 0,
                "input_tokens": inputs or 0,
                "output_tokens": outputs or 0,
                "cpu_s": cpu or 0.0,
                "gpu_s": gpu or 0.0,
            }
            spent[project] = sum(line_costs(self._prices, sums).values())
        return spent

    def reload(self) -> None:
        now = time.time()
        since = month_start(now)
        with self._db.session() as session:
            budgets = session.scalars(select(Budget)).all()
        spent = self.spent([b.project_id for b in budgets], since)
        states = {
            b.project_id: BudgetState(b.soft_usd, b.hard_usd, spent.get(b.project_id, 0.0))
            for b in budgets
        }
        self._states = states
        for budget in budgets:
            state = states[budget.project_id]
            if state.soft_reached and budget.soft_noticed_for != since:
                self._notice(budget.project_id, since, state)

    def _notice(self, project_id: str, period: int, state: BudgetState) -> None:
        """Record, once a month per project, that its soft budget was reached."""
        with self._db.session() as session:
            changed = session.execute(
                update(Budget)
                .where(
                    Budget.project_id == project_id,
                    (Budget.soft_noticed_for.is_(None)) | (Budget.soft_noticed_for != period),
                )
                .values(soft_noticed_for=period)
            ).rowcount  # type: ignore[attr-defined]
            if changed:
                detail = {"spent_usd": round(state.spent_usd, 6), "soft_usd": state.soft_usd}
                record(session, None, "budget.soft_limit_reached", f"project:{project_id}", detail)
                log.warning("project %s reached its soft budget: %s", project_id, detail)


class Ticket:
    """One admitted request: the limits it was charged to and what it is metered as."""

    __slots__ = (
        "caller",
        "deployment",
        "headers",
        "kind",
        "rates",
        "reserved",
        "service",
        "started",
    )

    def __init__(self, service: UsageService, caller: Caller, deployment: str, kind: str) -> None:
        self.service = service
        self.caller = caller
        self.deployment = deployment
        self.kind = kind
        self.rates: list[Rate] = []
        self.reserved = 0
        self.headers: dict[str, str] = {}
        self.started = time.perf_counter()

    def done(
        self,
        *,
        version: int | None = None,
        model: str | None = None,
        rows: int = 0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        status: str = "ok",
    ) -> None:
        """Meter the answered request, and correct its token charge to what it really used."""
        if not self.service.metering:
            return
        caller = self.caller
        self.service.meter.add(
            self.kind,
            caller.project_id,
            caller.key_id,
            caller.principal_id,
            self.deployment,
            model,
            version,
            status,
            rows,
            input_tokens,
            output_tokens,
            time.perf_counter() - self.started,
        )
        if self.rates:
            self.service.correct(self, input_tokens + output_tokens)

    def failed(self, status: int | str, *, version: int | None = None) -> None:
        """Meter a request that failed after it was admitted; give back its tokens."""
        self.done(version=version, status=str(status))


class UsageService:
    """Limits, budgets and metering of one server process."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self._settings = settings
        self._db = db
        self.prices = settings.prices
        self.metering = settings.metering
        self.book = LimitBook(db, settings.limits_cache_s)
        self.limiter = RateLimiter(settings.redis_url, settings.redis_prefix)
        self.meter = Meter(db, settings.usage_flush_s)
        self.budgets = BudgetBook(db, settings.prices)
        self._cache_s = settings.limits_cache_s
        self._budgets_at = 0.0
        self._rollup_at = time.monotonic()
        self._tasks: set[asyncio.Task[None]] = set()
        self.meter.on_flush(self._background)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self.reload()
        self.meter.start()

    def stop(self) -> None:
        self.meter.stop()

    def reload(self) -> None:
        """Read limits and budgets now (after a change made through this server)."""
        self.book.reload()
        self.budgets.reload()
        self._budgets_at = time.monotonic()

    def _background(self) -> None:
        self.book.refresh_if_stale()
        now = time.monotonic()
        if now - self._budgets_at >= self._cache_s:
            self._budgets_at = now
            self.budgets.reload()
        if now - self._rollup_at >= ROLLUP_EVERY_S:
            self._rollup_at = now
            from modelyard.usage.report import rollup

            rollup(self._db, time.time(), self._settings)

    # -- the hot path -----------------------------------------------------------------------
    async def admit(self, caller: Caller, deployment: str, kind: str, tokens: int = 0) -> Ticket:
        """Admit one request of ``caller`` to ``deployment`` charging ``tokens`` up front:
        402 if its project's hard budget is spent, 429 over a rate limit."""
        ticket = Ticket(self, caller, deployment, kind)
        if not self.metering:
            return ticket
        budget = self.budgets.get(caller.project_id)
        if budget is not None:
            self._check_budget(ticket, budget)
        rates = self.book.rates(caller.key_id, caller.project_id, deployment)
        if rates:
            await self._take(ticket, rates, tokens)
        return ticket

    def _check_budget(self, ticket: Ticket, budget: BudgetState) -> None:
        if budget.hard_spent:
            currency = self.prices.currency
            raise BudgetSpent(
                f"the project's budget for this month is spent: {budget.spent_usd:.2f} of "
                f"{budget.hard_usd:.2f} {currency}; an admin or the project's owner can raise it",
                code="insufficient_quota",
            )
        if budget.soft_reached:
            ticket.headers[BUDGET_HEADER] = (
                f"soft limit reached: spent {budget.spent_usd:.2f} of {budget.soft_usd:.2f}"
            )

    async def _take(self, ticket: Ticket, rates: list[Rate], tokens: int) -> None:
        taken: list[tuple[Rate, int]] = []
        refused: Rate | None = None
        for rate in rates:
            cost = 1 if rate.kind == REQUESTS else tokens
            if cost <= 0:
                continue
            if cost > rate.amount or not await self.limiter.hit(rate, cost):
                refused = rate
                break
            taken.append((rate, cost))
        if refused is not None:
            for rate, cost in taken:
                await self.limiter.adjust(rate, -cost)
            states = await self._states(rates)
            headers = rate_headers(states)
            mine = await self.limiter.state(refused)
            headers["Retry-After"] = str(max(1, math.ceil(mine.reset_s)))
            if refused.kind == TOKENS and tokens > refused.amount:
                detail = (
                    f"the request needs {tokens} tokens (prompt and max_tokens), more than "
                    f"{refused.describe()}"
                )
            else:
                detail = f"over {refused.describe()}; retry after {headers['Retry-After']} s"
            raise RateLimited(detail, headers, code="rate_limit_exceeded")
        ticket.rates = rates
        ticket.reserved = tokens
        if ticket.kind == "inference":  # tensors: no tokens, only the requests headers
            rates = [rate for rate in rates if rate.kind == REQUESTS]
        ticket.headers.update(rate_headers(await self._states(rates)))

    async def _states(self, rates: list[Rate]) -> dict[str, WindowState]:
        """For requests and tokens, the limit with the least left."""
        tightest: dict[str, WindowState] = {}
        for rate in rates:
            state = await self.limiter.state(rate)  # in memory while counted locally
            best = tightest.get(rate.kind)
            if best is None or state.remaining < best.remaining:
                tightest[rate.kind] = state
        return tightest

    def correct(self, ticket: Ticket, used_tokens: int) -> None:
        """Charge token limits what the request used instead of what it reserved."""
        delta = used_tokens - ticket.reserved
        if delta == 0:
            return
        token_rates = [rate for rate in ticket.rates if rate.kind == TOKENS]
        if not token_rates:
            return

        async def adjust() -> None:
            for rate in token_rates:
                await self.limiter.adjust(rate, delta)

        try:
            task = asyncio.get_running_loop().create_task(adjust())
        except RuntimeError:
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- job quotas -------------------------------------------------------------------------
    def admit_job(self, caller: Caller) -> dict[str, Any]:
        """Check a job submission against the running-jobs limits and the hard budget (4xx
        naming the quota, before anything is queued); what the job's spec keeps for metering."""
        budget = self.budgets.get(caller.project_id)
        if budget is not None and budget.hard_spent:
            raise BudgetSpent(
                f"the project's budget for this month is spent ({budget.spent_usd:.2f} of "
                f"{budget.hard_usd:.2f} {self.prices.currency}): no new jobs",
                quota="budget",
            )
        for scope, subject in (("key", caller.key_id), ("project", caller.project_id)):
            row = self.book.row(scope, subject)
            if row is None or subject is None:
                continue
            self._check_compute(scope, subject, row)
            if row.running_jobs is None:
                continue
            active = self._active_jobs(scope, subject)
            if active >= row.running_jobs:
                raise QuotaExceeded(
                    f"the {scope}'s quota of {row.running_jobs} running jobs is reached "
                    f"({active} queued or running); wait for one to finish",
                    quota="running_jobs",
                    limit=row.running_jobs,
                )
        return {"key_id": caller.key_id, "project_id": caller.project_id}

    def _check_compute(self, scope: str, subject: str, row: UsageLimit) -> None:
        """Refuse a job once the CPU- or GPU-seconds its key or project's jobs used today or
        this month reach the limit."""
        now = time.time()
        periods = (
            ("day", int(now) // 86400 * 86400, row.cpu_seconds_per_day, row.gpu_seconds_per_day),
            ("month", month_start(now), row.cpu_seconds_per_month, row.gpu_seconds_per_month),
        )
        for period, since, cpu_limit, gpu_limit in periods:
            if cpu_limit is None and gpu_limit is None:
                continue
            column = UsageRecord.key_id if scope == "key" else UsageRecord.project_id
            with self._db.session() as session:
                cpu, gpu = session.execute(
                    select(
                        func.coalesce(func.sum(UsageRecord.cpu_s), 0.0),
                        func.coalesce(func.sum(UsageRecord.gpu_s), 0.0),
                    ).where(
                        column == subject,
                        UsageRecord.kind == "job",
                        UsageRecord.start_time >= since,
                    )
                ).one()
            for kind, used, limit in (("cpu", cpu, cpu_limit), ("gpu", gpu, gpu_limit)):
                if limit is not None and used >= limit:
                    quota = f"{kind}_seconds_per_{period}"
                    raise QuotaExceeded(
                        f"the {scope}'s quota of {limit} {kind.upper()}-seconds of jobs per "
                        f"{period} is used up ({used:.0f} used)",
                        quota=quota,
                        limit=limit,
                    )

    def storage_limits(self, caller: Caller) -> list[tuple[str, str, int]]:
        """The stored-bytes limits that apply to ``caller`` (read from memory)."""
        found = []
        for scope, subject in (("key", caller.key_id), ("project", caller.project_id)):
            row = self.book.row(scope, subject)
            if row is not None and subject is not None and row.stored_bytes is not None:
                found.append((scope, subject, row.stored_bytes))
        return found

    def check_storage(self, caller: Caller, incoming: int) -> None:
        """Refuse an upload of ``incoming`` bytes that would take the project (or, for a key's
        limit, its principal) past its stored bytes: data sets and model versions."""
        for scope, subject, limit in self.storage_limits(caller):
            stored = self._stored_bytes(scope, subject, caller.principal_id)
            if stored + incoming > limit:
                raise QuotaExceeded(
                    f"the {scope}'s quota of {limit} stored bytes would be exceeded: "
                    f"{stored} stored, {incoming} more uploaded",
                    quota="stored_bytes",
                    limit=limit,
                )

    def _stored_bytes(self, scope: str, subject: str, principal_id: str) -> int:
        with self._db.session() as session:
            if scope == "project":
                datasets = select(func.coalesce(func.sum(Dataset.size), 0)).where(
                    Dataset.project_id == subject
                )
                versions = (
                    select(func.coalesce(func.sum(ModelVersion.size), 0))
                    .join(Model, Model.id == ModelVersion.model_id)
                    .where(Model.project_id == subject)
                )
            else:
                datasets = select(func.coalesce(func.sum(Dataset.size), 0)).where(
                    Dataset.owner_id == principal_id
                )
                versions = select(func.coalesce(func.sum(ModelVersion.size), 0)).where(
                    ModelVersion.created_by_id == principal_id
                )
            return int(session.scalar(datasets) or 0) + int(session.scalar(versions) or 0)

    def _active_jobs(self, scope: str, subject: str) -> int:
        with self._db.session() as session:
            if scope == "project":
                return int(
                    session.scalar(
                        select(func.count())
                        .select_from(Job)
                        .where(Job.project_id == subject, Job.status.in_(ACTIVE))
                    )
                    or 0
                )
            specs = session.scalars(select(Job.spec).where(Job.status.in_(ACTIVE))).all()
        return sum(1 for spec in specs if (spec.get("usage") or {}).get("key_id") == subject)

    # -- limits as stored -------------------------------------------------------------------
    def limits_of(self, scope: str, subject: str) -> list[UsageLimit]:
        with self._db.session() as session:
            return list(
                session.scalars(
                    select(UsageLimit).where(
                        UsageLimit.scope == scope, UsageLimit.subject_id == subject
                    )
                )
            )

    def replace_limits(
        self,
        caller: Caller,
        scope: str,
        subject: str,
        rows: dict[str, dict[str, int | None]],
    ) -> list[UsageLimit]:
        """Replace every limit of one key or project (``rows``: deployment -> columns)."""
        with self._db.session() as session:
            session.execute(
                delete(UsageLimit).where(
                    UsageLimit.scope == scope, UsageLimit.subject_id == subject
                )
            )
            for deployment, values in rows.items():
                if deployment != ALL and not any(v is not None for v in values.values()):
                    continue
                session.add(
                    UsageLimit(
                        scope=scope,
                        subject_id=subject,
                        deployment=deployment,
                        updated_by=caller.principal_id,
                        **values,
                    )
                )
            record(session, caller, "limits.set", f"{scope}:{subject}", {"limits": rows})
        self.book.reload()
        return self.limits_of(scope, subject)

    def clear_limits(self, caller: Caller, scope: str, subject: str) -> None:
        with self._db.session() as session:
            session.execute(
                delete(UsageLimit).where(
                    UsageLimit.scope == scope, UsageLimit.subject_id == subject
                )
            )
            record(session, caller, "limits.delete", f"{scope}:{subject}")
        self.book.reload()

    # -- budgets as stored ------------------------------------------------------------------
    def budget_of(self, project_id: str) -> tuple[Budget | None, float]:
        with self._db.session() as session:
            budget = session.get(Budget, project_id)
        spent = self.budgets.spent([project_id], month_start(time.time()))
        return budget, spent.get(project_id, 0.0)

    def set_budget(
        self, caller: Caller, project_id: str, soft_usd: float | None, hard_usd: float | None
    ) -> None:
        with self._db.session() as session:
            budget = session.get(Budget, project_id)
            if budget is None:
                budget = Budget(project_id=project_id)
                session.add(budget)
            budget.soft_usd = soft_usd
            budget.hard_usd = hard_usd
            budget.updated_by = caller.principal_id
            detail = {"soft_usd": soft_usd, "hard_usd": hard_usd}
            record(session, caller, "budget.set", f"project:{project_id}", detail)
        self.budgets.reload()

    def clear_budget(self, caller: Caller, project_id: str) -> None:
        with self._db.session() as session:
            session.execute(delete(Budget).where(Budget.project_id == project_id))
            record(session, caller, "budget.delete", f"project:{project_id}")
        self.budgets.reload()

    @staticmethod
    def period(at: float) -> tuple[int, int]:
        return month_start(at), next_month_start(at)


__all__ = ["BUDGET_HEADER", "BudgetState", "Ticket", "UsageService"]
