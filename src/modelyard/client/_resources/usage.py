"""``client.usage``: usage and costs in time buckets, limits of keys and projects, budgets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelyard.client._http import HTTP, seg
from modelyard.client._types import JSONObject


def _params(
    start: int,
    end: int | None,
    bucket_width: str,
    group_by: Sequence[str],
    **filters: Sequence[str] | None,
) -> dict[str, Any]:
    params: dict[str, Any] = {"start": int(start), "bucket_width": bucket_width}
    if end is not None:
        params["end"] = int(end)
    if group_by:
        params["group_by"] = ",".join(group_by)
    for name, values in filters.items():
        if values:
            params[name] = ",".join(values)
    return params


class Usage:
    """What was used and what it cost; limits and budgets (set by admins and project owners).

    Answers are the API's documents (OpenAI's usage and costs shapes: a page of buckets,
    each with its ``results``).

    Example::

        import time

        page = client.usage.get(time.time() - 86400, bucket_width="1h", group_by=["key"])
        for bucket in page["data"]:
            for result in bucket["results"]:
                print(bucket["start_time"], result["api_key_id"], result["num_model_requests"])
        client.usage.set_key_limits(key.id, requests_per_minute=60, tokens_per_minute=40_000)
        client.usage.set_budget("vision", soft_usd=80, hard_usd=100)
    """

    def __init__(self, http: HTTP) -> None:
        self._http = http

    def get(
        self,
        start: float,
        end: float | None = None,
        *,
        bucket_width: str = "1d",
        group_by: Sequence[str] = (),
        project_ids: Sequence[str] | None = None,
        api_key_ids: Sequence[str] | None = None,
        deployments: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
    ) -> JSONObject:
        """Usage from ``start`` to ``end`` (unix seconds) in buckets of ``1m``, ``1h`` or
        ``1d``, grouped by ``project``, ``key``, ``principal``, ``model``, ``deployment``,
        ``kind``."""
        params = _params(
            int(start),
            None if end is None else int(end),
            bucket_width,
            group_by,
            project_ids=project_ids,
            api_key_ids=api_key_ids,
            deployments=deployments,
            kinds=kinds,
        )
        return self._http.object("GET", "/api/v1/usage", params=params)

    def costs(
        self,
        start: float,
        end: float | None = None,
        *,
        bucket_width: str = "1d",
        group_by: Sequence[str] = (),
        project_ids: Sequence[str] | None = None,
    ) -> JSONObject:
        """Costs from the server's price table; ``group_by`` may add ``line_item``."""
        params = _params(
            int(start),
            None if end is None else int(end),
            bucket_width,
            group_by,
            project_ids=project_ids,
        )
        return self._http.object("GET", "/api/v1/costs", params=params)

    def key_limits(self, key_id: str) -> JSONObject:
        return self._http.object("GET", f"/api/v1/limits/keys/{seg(key_id)}")

    def set_key_limits(self, key_id: str, **limits: Any) -> JSONObject:
        """Replace a key's limits: ``requests_per_minute``, ``tokens_per_minute``,
        ``running_jobs``, ``cpu_seconds_per_day`` …, ``deployments={name: {...}}``."""
        return self._http.object("PUT", f"/api/v1/limits/keys/{seg(key_id)}", json=limits)

    def clear_key_limits(self, key_id: str) -> None:
        self._http.send("DELETE", f"/api/v1/limits/keys/{seg(key_id)}")

    def project_limits(self, project: str) -> JSONObject:
        return self._http.object("GET", f"/api/v1/limits/projects/{seg(project)}")

    def set_project_limits(self, project: str, **limits: Any) -> JSONObject:
        """Replace a project's limits (the same fields as :meth:`set_key_limits`)."""
        path = f"/api/v1/limits/projects/{seg(project)}"
        return self._http.object("PUT", path, json=limits)

    def clear_project_limits(self, project: str) -> None:
        self._http.send("DELETE", f"/api/v1/limits/projects/{seg(project)}")

    def budget(self, project: str) -> JSONObject:
        """A project's monthly budget and what it spent this month."""
        return self._http.object("GET", f"/api/v1/budgets/{seg(project)}")

    def set_budget(
        self, project: str, *, soft_usd: float | None = None, hard_usd: float | None = None
    ) -> JSONObject:
        body = {"soft_usd": soft_usd, "hard_usd": hard_usd}
        return self._http.object("PUT", f"/api/v1/budgets/{seg(project)}", json=body)

    def clear_budget(self, project: str) -> None:
        self._http.send("DELETE", f"/api/v1/budgets/{seg(project)}")
