"""Prometheus metrics of language models served by the engine, per deployment and version.

The names follow what operators of vLLM and TGI watch: requests by finish reason, prompt and
generated tokens, time to first token, end-to-end latency, queue time, prefix-cache hits and
misses, the running and waiting sequences of each engine, and the LoRA adapters attached to it
and how many of them shared each decoding step.

Run as several processes (``--workers N``), each process has its own engines and writes its
gauges to the server's shared folder: running and waiting sequences are summed over the live
processes (``livesum``), attached adapters are the most of any live process (``livemax``, each
process attaches the same ones to its own copy), and the counters and histograms are summed.
A gauge read through a function cannot be written there, so in that mode each engine event
(a sequence admitted, finished or refused) and each scrape write the gauges' current values.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from modelyard.serving.buckets import LLM_LATENCY_BUCKETS


class LlmCollectors:
    """The collectors, registered once in the server's registry."""

    def __init__(self, registry: CollectorRegistry, *, shared: bool = False) -> None:
        labels = ["deployment", "version"]
        self.shared = shared
        self.requests = Counter(
            "modelyard_llm_requests_total",
            "Generated sequences by how they ended (stop, length, abort, deadline, error).",
            [*labels, "finish_reason"],
            registry=registry,
        )
        self.rejected = Counter(
            "modelyard_llm_requests_rejected_total",
            "Requests refused because the engine's queue was full (429).",
            labels,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "modelyard_llm_prompt_tokens_total",
            "Prompt tokens of finished sequences (each of n choices runs its prompt).",
            labels,
            registry=registry,
        )
        self.generation_tokens = Counter(
            "modelyard_llm_generation_tokens_total",
            "Generated tokens of finished sequences.",
            labels,
            registry=registry,
        )
        self.ttft = Histogram(
            "modelyard_llm_time_to_first_token_seconds",
            "From submission to the first generated token.",
            labels,
            buckets=LLM_LATENCY_BUCKETS,
            registry=registry,
        )
        self.latency = Histogram(
            "modelyard_llm_request_latency_seconds",
            "From submission to the sequence's end.",
            labels,
            buckets=LLM_LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_time = Histogram(
            "modelyard_llm_queue_seconds",
            "Time a sequence waited before its prompt ran.",
            labels,
            buckets=LLM_LATENCY_BUCKETS,
            registry=registry,
        )
        self.prefix_hits = Counter(
            "modelyard_llm_prefix_cache_hits_total",
            "Prompts whose start was found in the prefix cache (only the rest ran).",
            labels,
            registry=registry,
        )
        self.prefix_misses = Counter(
            "modelyard_llm_prefix_cache_misses_total",
            "Prompts that ran whole (no cached prefix).",
            labels,
            registry=registry,
        )
        self.prefix_tokens = Counter(
            "modelyard_llm_prefix_cache_hit_tokens_total",
            "Prompt tokens whose KV came from the prefix cache.",
            labels,
            registry=registry,
        )
        self.running = Gauge(
            "modelyard_llm_requests_running",
            "Sequences in the engine's decoding batch.",
            labels,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.waiting = Gauge(
            "modelyard_llm_requests_waiting",
            "Sequences waiting to join the engine's batch.",
            labels,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.lora_adapters = Gauge(
            "modelyard_llm_lora_adapters",
            "LoRA adapters attached to the engine (served by adapter deployments on it).",
            labels,
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.lora_steps = Counter(
            "modelyard_llm_lora_decode_steps_total",
            "Decoding steps of an engine with LoRA adapters attached, by how many adapters the "
            "step ran (the plain model counted as one; above 1: requests for different adapters "
            "shared the step).",
            [*labels, "adapters"],
            registry=registry,
        )
        self._live: set[tuple[str, str]] = set()
        self._lora: set[tuple[str, str]] = set()
        # Shared mode: each gauge child and the function whose value it is to hold.
        self._functions: dict[tuple[Gauge, tuple[str, str]], Callable[[], float]] = {}
        self._lock = threading.Lock()

    def _read_through(self, gauge: Gauge, key: tuple[str, str], f: Callable[[], float]) -> None:
        if self.shared:
            with self._lock:
                self._functions[(gauge, key)] = f
            gauge.labels(*key).set(f())
        else:
            gauge.labels(*key).set_function(f)

    def publish(self) -> None:
        """Shared mode: write each gauge's current value where other processes read it."""
        if not self.shared:
            return
        with self._lock:
            functions = list(self._functions.items())
        for (gauge, key), f in functions:
            gauge.labels(*key).set(f())

    def observer(
        self,
        deployment: str,
        version: str,
        running: Callable[[], float],
        waiting: Callable[[], float],
    ) -> EngineMetrics:
        """The observer of one engine; its gauges read ``running()`` and ``waiting()``."""
        key = (deployment, version)
        self._read_through(self.running, key, running)
        self._read_through(self.waiting, key, waiting)
        with self._lock:
            self._live.add((deployment, version))
        return EngineMetrics(self, deployment, version)

    def lora(
        self, deployment: str, version: str, attached: Callable[[], float]
    ) -> Callable[[int], None]:
        """What the adapter bank of one engine reports: its adapters (``attached()``, read
        when scraped) and, through the function returned, each decoding step's adapters."""
        self._read_through(self.lora_adapters, (deployment, version), attached)
        with self._lock:
            self._lora.add((deployment, version))
        steps = self.lora_steps

        def on_decode_step(adapters: int) -> None:
            steps.labels(deployment, version, str(adapters)).inc()

        return on_decode_step

    def forget(self, deployment: str) -> None:
        """Drop the gauges of a deployment's engines (they read engines being unloaded)."""
        with self._lock:
            gone = [key for key in self._live if key[0] == deployment]
            self._live.difference_update(gone)
            lora = [key for key in self._lora if key[0] == deployment]
            self._lora.difference_update(lora)
            for entry in [e for e in self._functions if e[1][0] == deployment]:
                del self._functions[entry]
        if self.shared:
            # Removing a child leaves its value in this process's file; zero it first.
            for key in gone:
                self.running.labels(*key).set(0)
                self.waiting.labels(*key).set(0)
            for key in lora:
                self.lora_adapters.labels(*key).set(0)
        for key in gone:
            self.running.remove(*key)
            self.waiting.remove(*key)
        for key in lora:
            self.lora_adapters.remove(*key)


@dataclass
class EngineMetrics:
    """What one deployment version's engine reports (its observer)."""

    collectors: LlmCollectors
    deployment: str
    version: str

    def on_reject(self) -> None:
        self.collectors.rejected.labels(self.deployment, self.version).inc()
        self.collectors.publish()

    def on_admitted(self, queue_s: float) -> None:
        self.collectors.queue_time.labels(self.deployment, self.version).observe(queue_s)
        self.collectors.publish()

    def on_first_token(self, ttft_s: float) -> None:
        self.collectors.ttft.labels(self.deployment, self.version).observe(ttft_s)

    def on_prefix_cache(self, cached_tokens: int, prompt_tokens: int) -> None:
        c, labels = self.collectors, (self.deployment, self.version)
        if cached_tokens:
            c.prefix_hits.labels(*labels).inc()
            c.prefix_tokens.labels(*labels).inc(cached_tokens)
        else:
            c.prefix_misses.labels(*labels).inc()

    def on_finished(
        self, reason: str, prompt_tokens: int, completion_tokens: int, latency_s: float
    ) -> None:
        c, labels = self.collectors, (self.deployment, self.version)
        c.requests.labels(*labels, reason).inc()
        c.prompt_tokens.labels(*labels).inc(prompt_tokens)
        c.generation_tokens.labels(*labels).inc(completion_tokens)
        c.latency.labels(*labels).observe(latency_s)
        c.publish()
