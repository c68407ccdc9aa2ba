"""A data set's privacy budget: the total (ε, δ) private jobs may spend on it, and the ledger.

The owner (or an admin) sets a budget (``PUT /api/v1/datasets/{name}/privacy-budget``).
From then on, every job that reads the data set is checked when it is submitted, in the
transaction that queues it (:func:`charge`):

- a private job (``privacy`` in its request) that trains on it reserves the ε and δ of its
  whole planned run in the ledger; if the entries already there plus this one would exceed
  the budget (basic composition: ε and δ add up), the job is refused with a 409 saying what
  is left, and nothing is queued;
- any other use (a job without ``privacy``, or one that only evaluates or validates on it)
  is refused with a 403 unless the owner set ``allow_non_private``.

When the job registers its version the entry is settled to what the run spent (less than
reserved after an early stop) and names the version (:func:`settle`); a job cancelled
before it ran gets its reservation back (:func:`release`). A job that failed or was
cancelled after it started keeps its reservation: its noisy steps did touch the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from modelyard.auth.access import Caller, Permission
from modelyard.auth.audit import record
from modelyard.datasets.service import DatasetService
from modelyard.db.engine import Database
from modelyard.db.tables import Dataset, Job, PrivacyBudget, PrivacyLedgerEntry
from modelyard.errors import Conflict, Forbidden, InvalidInput

# Entries that count against a budget.
_COUNTED = ("reserved", "spent")
# Sums of floats: what is left may be off by this much and still admit a job that fits.
_SLACK = 1e-9
# Plan keys naming the data sets a job trains on; the private one is its "privacy" target.
_TRAINED_ON = ("dataset_id", "fit_dataset_id", "training_dataset_id")
_EVALUATED_ON = ("eval_dataset_id",)


@dataclass(frozen=True)
class Spent:
    """What a data set's ledger adds up to."""

    epsilon: float
    delta: float


def _spent(session: Session, dataset_id: str) -> Spent:
    epsilon, delta = session.execute(
        select(
            func.coalesce(func.sum(PrivacyLedgerEntry.epsilon), 0.0),
            func.coalesce(func.sum(PrivacyLedgerEntry.delta), 0.0),
        ).where(
            PrivacyLedgerEntry.dataset_id == dataset_id,
            PrivacyLedgerEntry.status.in_(_COUNTED),
        )
    ).one()
    return Spent(float(epsilon), float(delta))


def _view(
    session: Session, row: Dataset, budget: PrivacyBudget | None, ledger: bool
) -> dict[str, Any]:
    if budget is None:
        return {"dataset": row.name, "budget": None}
    spent = _spent(session, row.id)
    out: dict[str, Any] = {
        "dataset": row.name,
        "budget": {"epsilon": budget.epsilon, "delta": budget.delta},
        "allow_non_private": budget.allow_non_private,
        "spent": {"epsilon": spent.epsilon, "delta": spent.delta},
        "left": {
            "epsilon": max(0.0, budget.epsilon - spent.epsilon),
            "delta": max(0.0, budget.delta - spent.delta),
        },
        "updated_at": budget.updated_at,
    }
    if ledger:
        entries = session.scalars(
            select(PrivacyLedgerEntry)
            .where(PrivacyLedgerEntry.dataset_id == row.id)
            .order_by(PrivacyLedgerEntry.id)
        ).all()
        out["ledger"] = [
            {
                "job_id": e.job_id,
                "model": e.model,
                "version": e.version,
                "epsilon": e.epsilon,
                "delta": e.delta,
                "status": e.status,
                "created_at": e.created_at,
            }
            for e in entries
        ]
    return out


class PrivacyBudgets:
    """Reading and setting data sets' budgets (the ledger is written by jobs)."""

    def __init__(self, db: Database, datasets: DatasetService) -> None:
        self._db = db
        self._datasets = datasets

    def get(self, caller: Caller, name: str) -> dict[str, Any]:
        """The budget, what is spent and left; the ledger too for its owner or an admin."""
        row = self._datasets.get(caller, name)
        with self._db.session() as session:
            budget = session.get(PrivacyBudget, row.id)
            return _view(session, row, budget, ledger=_owns(caller, row))

    def set(
        self,
        caller: Caller,
        name: str,
        *,
        epsilon: float,
        delta: float,
        allow_non_private: bool,
    ) -> dict[str, Any]:
        """Set (or change) the budget; owner or admin only, audited. A budget below what
        the ledger already holds is a 409."""
        row = self._datasets.get(caller, name, Permission.WRITE)
        if not _owns(caller, row):
            raise Forbidden("only the data set's owner or an admin can set its privacy budget")
        if not (epsilon > 0 and 0 < delta < 1):
            raise InvalidInput("privacy budget: epsilon must be > 0 and delta in (0, 1)")
        with self._db.session() as session:
            _lock(session, row.id)
            spent = _spent(session, row.id)
            if epsilon + _SLACK < spent.epsilon or delta + _SLACK < spent.delta:
                raise Conflict(
                    f"privacy budget: jobs on '{name}' have already spent ε={spent.epsilon:.4g}, "
                    f"δ={spent.delta:.3g}; a budget cannot be below that"
                )
            budget = session.get(PrivacyBudget, row.id)
            if budget is None:
                budget = PrivacyBudget(dataset_id=row.id, epsilon=epsilon, delta=delta)
                session.add(budget)
            budget.epsilon, budget.delta = epsilon, delta
            budget.allow_non_private = allow_non_private
            budget.updated_by_id = caller.principal_id
            budget.updated_at = datetime.now(UTC)
            record(
                session,
                caller,
                "dataset.privacy_budget",
                f"dataset:{name}",
                {"epsilon": epsilon, "delta": delta, "allow_non_private": allow_non_private},
            )
            session.flush()
            return _view(session, row, budget, ledger=True)


def _owns(caller: Caller, row: Dataset) -> bool:
    return row.owner_id == caller.principal_id or caller.acts_as_admin


def _lock(session: Session, dataset_id: str) -> None:
    """Serialize spending on one data set's budget: a write to its row first (a row lock
    on PostgreSQL, the database's write lock on SQLite) before the ledger is summed."""
    session.execute(
        update(PrivacyBudget)
        .where(PrivacyBudget.dataset_id == dataset_id)
        .values(updated_at=PrivacyBudget.updated_at)
    )


def _uses(session: Session, spec: Mapping[str, Any]) -> list[tuple[Dataset, bool, bool]]:
    """The data sets a planned job reads, each with whether it trains on it privately (with
    ``privacy``) and whether it reads it otherwise (trains without privacy, evaluates or
    validates on it): one job may do both with one data set."""
    private = isinstance(spec.get("privacy"), Mapping)
    uses: dict[str, list[bool]] = {}
    for key in _TRAINED_ON:
        if isinstance(spec.get(key), str):
            use = uses.setdefault(spec[key], [False, False])
            use[0 if private else 1] = True
    for key in _EVALUATED_ON:
        if isinstance(spec.get(key), str):
            uses.setdefault(spec[key], [False, False])[1] = True
    validation = spec.get("validation_dataset")
    if isinstance(validation, str):
        found = session.scalar(select(Dataset.id).where(Dataset.name == validation))
        if found is not None:
            uses.setdefault(found, [False, False])[1] = True
    out = []
    for dataset_id, (trained, other) in uses.items():
        row = session.get(Dataset, dataset_id)
        if row is not None:
            out.append((row, trained, other))
    return out


def charge(session: Session, caller: Caller, job_id: str, spec: Mapping[str, Any]) -> None:
    """Check job ``job_id``'s uses of budgeted data sets and reserve what its private run
    spends, in the session that queues it (an exception leaves nothing queued)."""
    for row, private, other in _uses(session, spec):
        if session.get(PrivacyBudget, row.id) is None:
            continue
        _lock(session, row.id)
        budget = session.get_one(PrivacyBudget, row.id)
        if other and not budget.allow_non_private:
            raise Forbidden(
                f"data set '{row.name}' has a privacy budget: only private training "
                '("privacy": {"target_epsilon": …, "target_delta": …}) may use it, not '
                "training without privacy, evaluation or validation; its owner can allow "
                "them (allow_non_private)"
            )
        if not private:
            continue
        plan = spec["privacy"]
        need = Spent(float(plan["epsilon"]), float(plan["delta"]))
        spent = _spent(session, row.id)
        left = Spent(budget.epsilon - spent.epsilon, budget.delta - spent.delta)
        if need.epsilon > left.epsilon + _SLACK or need.delta > left.delta + _SLACK:
            raise Conflict(
                f"privacy budget of data set '{row.name}': ε={max(left.epsilon, 0.0):.4g} and "
                f"δ={max(left.delta, 0.0):.3g} are left (of ε={budget.epsilon:.4g}, "
                f"δ={budget.delta:.3g}); this job would spend ε={need.epsilon:.4g}, "
                f"δ={need.delta:.3g}. Ask for a smaller target_epsilon, or fewer epochs"
            )
        session.add(
            PrivacyLedgerEntry(
                dataset_id=row.id,
                job_id=job_id,
                epsilon=need.epsilon,
                delta=need.delta,
                status="reserved",
            )
        )
        record(
            session,
            caller,
            "dataset.privacy_spend",
            f"dataset:{row.name}",
            {"job": job_id, "epsilon": need.epsilon, "delta": need.delta},
        )


def settle(
    db: Database, job_id: str, *, model: str, version: int, spent: Mapping[str, Any]
) -> None:
    """Job ``job_id`` registered ``model`` ``version`` having spent ``spent`` (its version's
    ``privacy`` block): its reservations become that spend."""
    with db.session() as session:
        session.execute(
            update(PrivacyLedgerEntry)
            .where(PrivacyLedgerEntry.job_id == job_id, PrivacyLedgerEntry.status == "reserved")
            .values(
                status="spent",
                model=model,
                version=version,
                epsilon=float(spent["epsilon"]),
                delta=float(spent["delta"]),
                updated_at=datetime.now(UTC),
            )
        )


def release(db: Database, job_id: str) -> None:
    """Give back the reservations of job ``job_id`` if it never started (cancelled while
    queued)."""
    with db.session() as session:
        job = session.get(Job, job_id)
        if job is None or job.started_at is not None or job.status != "cancelled":
            return
        session.execute(
            update(PrivacyLedgerEntry)
            .where(PrivacyLedgerEntry.job_id == job_id, PrivacyLedgerEntry.status == "reserved")
            .values(status="released", updated_at=datetime.now(UTC))
        )
