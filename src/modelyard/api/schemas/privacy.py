"""A data set's privacy budget and ledger."""

from __future__ import annotations

from pydantic import ConfigDict, Field, StrictBool

from modelyard.api.schemas.common import Schema, UtcDatetime


class PrivacyBudgetIn(Schema):
    """The total (ε, δ) private jobs may spend on the data set (basic composition)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"epsilon": 10.0, "delta": 1e-4}]},
    )

    epsilon: float = Field(gt=0.0, le=1e4, description="Total ε of every private job together.")
    delta: float = Field(gt=0.0, lt=1.0, description="Total δ of every private job together.")
    allow_non_private: StrictBool = Field(
        default=False,
        description="Whether jobs without privacy (and evaluations) may still use the data set.",
    )


class PrivacyAmount(Schema):
    epsilon: float
    delta: float


class PrivacyLedgerEntryOut(Schema):
    job_id: str
    model: str | None
    version: int | None
    epsilon: float
    delta: float
    status: str = Field(description="reserved (job not done), spent, or released.")
    created_at: UtcDatetime


class PrivacyBudgetOut(Schema):
    dataset: str
    budget: PrivacyAmount | None = Field(description="None: the data set has no budget.")
    allow_non_private: bool = False
    spent: PrivacyAmount | None = None
    left: PrivacyAmount | None = None
    updated_at: UtcDatetime | None = None
    ledger: list[PrivacyLedgerEntryOut] | None = Field(
        default=None, description="Each private job's spend; shown to the owner and admins."
    )
