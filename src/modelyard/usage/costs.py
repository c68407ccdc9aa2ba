"""What use costs, from the price table in the settings (``MODELYARD_PRICES``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from modelyard.config import Prices

GB = 1e9
MONTH_S = 30 * 86400

# Each line item: the usage sum it is priced on and its price per unit of that sum.
LINE_ITEMS = ("requests", "input_tokens", "output_tokens", "cpu", "gpu")


def line_costs(prices: Prices, sums: Mapping[str, float]) -> dict[str, float]:
    """The cost of each line item of ``sums`` (requests, tokens, CPU- and GPU-seconds)."""
    return {
        "requests": sums.get("requests", 0) / 1000 * prices.per_1k_requests,
        "input_tokens": sums.get("input_tokens", 0) / 1e6 * prices.per_1m_input_tokens,
        "output_tokens": sums.get("output_tokens", 0) / 1e6 * prices.per_1m_output_tokens,
        "cpu": sums.get("cpu_s", 0) / 3600 * prices.per_cpu_hour,
        "gpu": sums.get("gpu_s", 0) / 3600 * prices.per_gpu_hour,
    }


def storage_cost(prices: Prices, stored_bytes: float, seconds: float) -> float:
    """Keeping ``stored_bytes`` for ``seconds`` at the price per GB-month."""
    return stored_bytes / GB * seconds / MONTH_S * prices.per_gb_month


def month_start(at: float) -> int:
    """The first second (UTC) of the month holding ``at``."""
    moment = datetime.fromtimestamp(at, UTC)
    return int(datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp())


def next_month_start(at: float) -> int:
    moment = datetime.fromtimestamp(at, UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp())


__all__ = ["LINE_ITEMS", "line_costs", "month_start", "next_month_start", "storage_cost"]
