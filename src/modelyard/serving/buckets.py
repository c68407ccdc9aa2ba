"""Histogram buckets (seconds) shared by the serving metrics."""

from __future__ import annotations

# From half a millisecond (a small model's forward) to ten seconds.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

# A generation takes from milliseconds (a token) to minutes (a long answer).
LLM_LATENCY_BUCKETS = (*LATENCY_BUCKETS[3:], 30.0, 60.0, 120.0)
