"""How a deployment batches and queues when its spec does not say: defined here once.

The deployment spec (:class:`~modelyard.serving.spec.DeploymentSpec`), the batcher
(:class:`~modelyard.serving.batcher.BatchConfig`), the API's examples and the CLI's help
read these; the SDK and the CLI send only what the user set, so the server's values apply.
"""

from __future__ import annotations

MAX_BATCH_SIZE = 32
"""Rows per batch."""

MAX_BATCH_DELAY_MS = 2.0
"""Longest a batch waits for more rows after its oldest request arrived."""

MAX_QUEUE = 1024
"""Rows that may wait for compute before requests are refused (429)."""

TIMEOUT_MS: float = 30_000
"""Deadline of a request (504 when it is not computed in time)."""

REPLICAS = 1
"""Batches computed at once."""

__all__ = ["MAX_BATCH_DELAY_MS", "MAX_BATCH_SIZE", "MAX_QUEUE", "REPLICAS", "TIMEOUT_MS"]
