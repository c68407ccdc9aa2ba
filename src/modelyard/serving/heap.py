"""Keeping the cyclic garbage collector's pauses off the serving path.

A server process holds a few hundred thousand long-lived objects (torch, ONNX Runtime,
pydantic, SQLAlchemy, the loaded models). CPython's collector walks every one of them in each
full collection, and under load full collections come every second or two: requests in flight
survive the young collections and are promoted until they tip the oldest generation over. On
the 2-core development machine at concurrency 64 each was a stall of 100 to 600 ms, the p99 of
every request in flight. :func:`settle` moves what is alive now out of the collector's reach
(``gc.freeze``), so that collections walk only what requests allocated since.

What is frozen is still freed by reference counting; only a reference cycle among frozen
objects would outlive its use. A swapped-out model version has none (checked for the torch
and ONNX Runtime runtimes: their runtime, batcher and ``Served`` are freed with the cyclic
collector off).
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect what is garbage now, then freeze everything still alive.

    Call it when what was just built will live as long as the server (a model loaded for
    serving); after the first call, its collection walks only the objects made since the last.
    """
    gc.collect()
    gc.freeze()


__all__ = ["settle"]
