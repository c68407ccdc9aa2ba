"""Language-model gauges of a server run as several processes: each process writes its
engines' running and waiting sequences to the shared Prometheus folder on every engine event,
and ``/metrics`` sums them over the live processes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, multiprocess

from modelyard.serving.llm_metrics import LlmCollectors


def _engine_process(running: int, waiting: int, adapters: int, forget: bool) -> None:
    """One server process's engine of ``tiny`` v1: idle when its gauges are registered, then
    with ``running`` and ``waiting`` sequences when a sequence is admitted."""
    collectors = LlmCollectors(CollectorRegistry(), shared=True)
    now = {"running": 0, "waiting": 0}
    observer = collectors.observer(
        "tiny", "1", running=lambda: now["running"], waiting=lambda: now["waiting"]
    )
    collectors.lora("tiny", "1", attached=lambda: adapters)
    now.update(running=running, waiting=waiting)
    observer.on_admitted(0.01)
    if forget:
        collectors.forget("tiny")


def _run(running: int, waiting: int, adapters: int, forget: bool = False) -> int:
    process = multiprocessing.get_context("spawn").Process(
        target=_engine_process, args=(running, waiting, adapters, forget)
    )
    process.start()
    process.join(timeout=120)
    assert process.exitcode == 0
    assert process.pid is not None
    return process.pid


def _gauges(folder: Path) -> dict[str, float]:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, str(folder))  # type: ignore[no-untyped-call]
    return {
        s.name: s.value
        for family in registry.collect()
        for s in family.samples
        if s.labels == {"deployment": "tiny", "version": "1"}
        and s.name
        in (
            "modelyard_llm_requests_running",
            "modelyard_llm_requests_waiting",
            "modelyard_llm_lora_adapters",
        )
    }


def test_gauges_are_summed_over_live_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read by prometheus_client when the spawned processes import it.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    first = _run(running=3, waiting=1, adapters=2)
    second = _run(running=4, waiting=5, adapters=2)
    assert _gauges(tmp_path) == {
        "modelyard_llm_requests_running": 7,
        "modelyard_llm_requests_waiting": 6,
        # Each process attaches the same adapters to its own copy of the model.
        "modelyard_llm_lora_adapters": 2,
    }
    # A process that is gone no longer counts (the supervisor marks it dead).
    multiprocess.mark_process_dead(first, str(tmp_path))  # type: ignore[no-untyped-call]
    assert _gauges(tmp_path)["modelyard_llm_requests_running"] == 4
    multiprocess.mark_process_dead(second, str(tmp_path))  # type: ignore[no-untyped-call]
    # A deployment deleted in a live process leaves nothing of its engines behind.
    _run(running=2, waiting=2, adapters=1, forget=True)
    assert _gauges(tmp_path) == {
        "modelyard_llm_requests_running": 0,
        "modelyard_llm_requests_waiting": 0,
        "modelyard_llm_lora_adapters": 0,
    }
