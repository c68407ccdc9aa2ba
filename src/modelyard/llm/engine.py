"""A decoding engine with continuous batching over one causal language model.

One thread owns the model. Between two decoding steps it drops sequences whose client went
away, admits waiting ones (their prompt is run once, its KV cache padded into the running
batch; a prompt whose block-aligned start was run before reuses that start's KV cache from
the prefix cache and runs only the rest), then runs one step for every running sequence at
once. So concurrent requests share each forward pass instead of queueing behind each other,
and a request joins or leaves the batch without waiting for the others to finish. The HTTP
side talks to the engine through :meth:`LLMEngine.submit`, which returns a
:class:`GenerationStream` to iterate.

Example::

    engine = LLMEngine(model, tokenizer.decode, EngineConfig(context_length=1024))
    engine.start()
    stream = engine.submit(prompt_ids, SamplingParams(max_tokens=16))
    async for delta in stream:
        print(delta.text, end="")
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from modelyard.errors import (
    DeadlineExceeded,
    InvalidInput,
    ModelyardError,
    NotFound,
    TooManyRequests,
    Unavailable,
)
from modelyard.llm.batch import (
    KV,
    RunningBatch,
    build_cache,
    cache_tensors,
    prefill_inputs,
    select_rows,
)
from modelyard.llm.detok import StreamDecoder
from modelyard.llm.lora import AdapterBank, LoraAdapter
from modelyard.llm.prefix_cache import PrefixCache
from modelyard.llm.sampling import (
    SamplingParams,
    TokenLogprob,
    logprobs_of,
    make_generator,
    sample_next,
)

if TYPE_CHECKING:
    import torch

    from modelyard.llm.grammar import Guide

log = logging.getLogger("modelyard.llm")
_ids = itertools.count(1)


@dataclass(frozen=True)
class EngineConfig:
    """Limits of one engine."""

    context_length: int
    """Most positions a sequence may use (prompt plus generated tokens)."""
    max_running: int = 32
    """Sequences decoded together in one batch; more wait in the queue."""
    max_queue: int = 1024
    """Sequences allowed to wait; beyond that a request is refused (429)."""
    name: str = "llm"
    """Label for logs and the thread's name."""
    prefix_cache_bytes: int = 256 << 20
    """Bound of the KV caches of prompt prefixes kept for reuse (0: keep none)."""


class EngineObserver(Protocol):
    """What an engine reports as it works (called on its decoding thread; keep it cheap)."""

    def on_reject(self) -> None:
        """A request was refused because the queue was full."""

    def on_admitted(self, queue_s: float) -> None:
        """A sequence left the queue after ``queue_s`` seconds and had its prompt run."""

    def on_first_token(self, ttft_s: float) -> None:
        """A sequence's first token, ``ttft_s`` seconds after it was submitted."""

    def on_prefix_cache(self, cached_tokens: int, prompt_tokens: int) -> None:
        """A prompt found its first ``cached_tokens`` in the prefix cache (0: a miss)."""

    def on_finished(
        self, reason: str, prompt_tokens: int, completion_tokens: int, latency_s: float
    ) -> None:
        """A sequence ended: ``stop``, ``length``, ``abort``, ``deadline`` or ``error``."""


@dataclass(frozen=True)
class Delta:
    """What one decoding step added to a sequence."""

    text: str
    completion_tokens: int
    finish_reason: str | None = None
    """``stop`` (end token or stop string), ``length`` (max_tokens or context), or None."""
    logprobs: tuple[TokenLogprob, ...] = ()
    """The token this step chose, with its log-probability, when the request asked for it
    (an end token, which is not part of the text, has none)."""


@dataclass
class _Sequence:
    id: int
    prompt_ids: list[int]
    params: SamplingParams
    stream: GenerationStream
    deadline: float | None
    decoder: StreamDecoder
    generator: torch.Generator | None = None
    guide: Guide | None = None
    """Where the sequence stands in its grammar, when its params carry a constraint."""
    adapter: LoraAdapter | None = None
    """The LoRA adapter this sequence runs with (None: the plain model)."""
    generated: list[int] = field(default_factory=list)
    aborted: bool = False
    submitted: float = field(default_factory=time.monotonic)


class GenerationStream:
    """The client's end of one sequence: iterate for :class:`Delta` s, or :meth:`abort`.

    The engine thread appends what each step adds to :attr:`_pending` and, once per step,
    wakes every stream that has something new with one call into the event loop. A reader that
    fell behind takes everything pending as one merged :class:`Delta`. A stream that is not
    ``incremental`` is only woken when its sequence ends, so its reader does no work per token.
    """

    def __init__(self, engine: LLMEngine, prompt_tokens: int, *, incremental: bool = True) -> None:
        self._engine = engine
        self._pending: collections.deque[Delta | BaseException] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self.loop = asyncio.get_running_loop()
        self.incremental = incremental
        self._sequence: _Sequence | None = None
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0
        self.finish_reason: str | None = None

    def _push(self, item: Delta | BaseException) -> bool:
        """Engine side: keep ``item``; say whether the reader should be woken for it."""
        self._pending.append(item)
        return self.incremental or _ends(item)

    def _ready(self) -> bool:
        """Whether the reader has something to take (when not incremental: the end)."""
        if not self._pending:
            return False
        return self.incremental or _ends(self._pending[-1])

    def _wake(self) -> None:
        """Event-loop side: let a waiting reader look at what is pending."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _take(self) -> Delta | BaseException:
        """Everything pending up to the first error, as one delta (or that error)."""
        first = self._pending.popleft()
        if isinstance(first, BaseException) or not self._pending:
            return first
        deltas = [first]
        while self._pending and not isinstance(self._pending[0], BaseException):
            item = self._pending.popleft()
            assert isinstance(item, Delta)  # the loop stops before an error
            deltas.append(item)
        last = deltas[-1]
        return Delta(
            "".join(delta.text for delta in deltas),
            last.completion_tokens,
            last.finish_reason,
            tuple(lp for delta in deltas for lp in delta.logprobs),
        )

    def abort(self) -> None:
        """Stop generating: a waiting sequence leaves the queue at once; a running one frees
        its slot before the engine's next step."""
        if self._sequence is not None and self.finish_reason is None:
            self._sequence.aborted = True
            self._engine._discard_waiting(self._sequence)
            self._engine._wake()

    def __aiter__(self) -> AsyncIterator[Delta]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Delta]:
        try:
            while self.finish_reason is None:
                if not self._ready():
                    # The engine appends before it schedules the wake-up, and the wake-up
                    # runs on this loop after we await, so none is lost in between.
                    self._waiter = self.loop.create_future()
                    try:
                        await self._waiter
                    finally:
                        self._waiter = None
                    continue
                item = self._take()
                if isinstance(item, BaseException):
                    self.finish_reason = "error"
                    raise item
                self.completion_tokens = item.completion_tokens
                self.finish_reason = item.finish_reason
                yield item
        finally:
            self.abort()

    async def text(self) -> str:
        """Run to the end and return the whole generated text."""
        return "".join([delta.text async for delta in self])


def _ends(item: Delta | BaseException) -> bool:
    return isinstance(item, BaseException) or item.finish_reason is not None


def _wake_all(streams: list[GenerationStream]) -> None:
    for stream in streams:
        stream._wake()


class LLMEngine:
    """Continuous batching over ``model`` (a transformers causal LM, already on its device)."""

    def __init__(
        self,
        model: Any,
        decode: Callable[[Sequence[int]], str],
        config: EngineConfig,
    ) -> None:
        self._model = model
        self._decode = decode
        self.config = config
        self._cond = threading.Condition()
        self._waiting: collections.deque[_Sequence] = collections.deque()
        self._running: list[_Sequence] = []
        self._batch = RunningBatch()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._woken: list[GenerationStream] = []
        """Streams given something since the last :meth:`_flush` (engine thread only)."""
        self.steps = 0
        self.max_batch_seen = 0
        self.observer: EngineObserver | None = None
        self.adapters: AdapterBank | None = None
        """LoRA adapters a request may name (see :mod:`modelyard.llm.lora`)."""
        self.prefix_cache = (
            PrefixCache(config.prefix_cache_bytes) if config.prefix_cache_bytes > 0 else None
        )

    @property
    def device(self) -> torch.device:
        device: torch.device = next(self._model.parameters()).device
        return device

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name=f"llm-{self.config.name}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop the thread; sequences still waiting or running get an error."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
        gone = Unavailable(f"the model '{self.config.name}' was unloaded")
        for seq in [*self._waiting, *self._running]:
            self._deliver(seq, gone)
        self._flush()
        self._waiting.clear()
        self._running.clear()
        self._batch = RunningBatch()
        if self.prefix_cache is not None:
            self.prefix_cache.clear()

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    # -- requests (event loop side) --------------------------------------------------
    def submit(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        *,
        deadline: float | None = None,
        adapter: str | LoraAdapter | None = None,
        incremental: bool = True,
    ) -> GenerationStream:
        """Queue one sequence; ``deadline`` (``time.monotonic()``) bounds its wait to start;
        ``adapter`` is a LoRA adapter attached to :attr:`adapters` (or its name) to run it with;
        ``incremental=False`` hands the stream its whole output once, when it ends.

        Raises:
            InvalidInput: an empty prompt, or one that leaves no room in the context.
            TooManyRequests: the queue is full.
            NotFound: no adapter of that name is attached.
        """
        lora = adapter if not isinstance(adapter, str) else None
        if isinstance(adapter, str):
            lora = self.adapters.get(adapter) if self.adapters is not None else None
            if lora is None:
                raise NotFound(f"the model '{self.config.name}' has no adapter '{adapter}'")
        if not prompt_ids:
            raise InvalidInput("the prompt is empty")
        if len(prompt_ids) >= self.config.context_length:
            raise InvalidInput(
                f"the prompt has {len(prompt_ids)} tokens; the model's context is "
                f"{self.config.context_length}"
            )
        stream = GenerationStream(self, len(prompt_ids), incremental=incremental)
        seq = _Sequence(
            id=next(_ids),
            prompt_ids=list(prompt_ids),
            params=params,
            stream=stream,
            deadline=deadline,
            decoder=StreamDecoder(self._decode, params.stop),
            guide=params.constraint.start() if params.constraint is not None else None,
            adapter=lora,
        )
        stream._sequence = seq
        with self._cond:
            if self._stopped:
                raise Unavailable(f"the model '{self.config.name}' is unloaded")
            if len(self._waiting) >= self.config.max_queue:
                if self.observer is not None:
                    self.observer.on_reject()
                raise TooManyRequests(
                    f"the model '{self.config.name}' has {len(self._waiting)} requests waiting",
                    retry_after=1,
                )
            self._waiting.append(seq)
            self._cond.notify()
        return stream

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    # -- the decoding thread ---------------------------------------------------------
    def _loop(self) -> None:
        import torch

        while True:
            with self._cond:
                while not self._stopped and not self._waiting and not self._running:
                    self._cond.wait()
                if self._stopped:
                    return
                room = self.config.max_running - len(self._running)
                admitted = [self._waiting.popleft() for _ in range(min(room, len(self._waiting)))]
            with torch.inference_mode():
                self._drop_aborted()
                if admitted:
                    self._admit(admitted)
                    self._flush()  # first tokens go out before the next step runs
                if self._running:
                    self._step()
                self._flush()

    def _deliver(self, seq: _Sequence, item: Delta | BaseException) -> None:
        if seq.stream._push(item):
            self._woken.append(seq.stream)

    def _flush(self) -> None:
        """Wake the readers of every stream given something: one call per event loop."""
        if not self._woken:
            return
        woken, self._woken = self._woken, []
        by_loop: dict[asyncio.AbstractEventLoop, list[GenerationStream]] = {}
        for stream in woken:
            by_loop.setdefault(stream.loop, []).append(stream)
        for loop, streams in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
                loop.call_soon_threadsafe(_wake_all, streams)

    def _discard_waiting(self, seq: _Sequence) -> None:
        with self._cond, contextlib.suppress(ValueError):
            self._waiting.remove(seq)

    def _drop_aborted(self) -> None:
        keep = [row for row, seq in enumerate(self._running) if not seq.aborted]
        if len(keep) != len(self._running):
            for seq in self._running:
                if seq.aborted:
                    self._finished(seq, "abort")
            self._batch.keep(keep)
            self._running = [self._running[row] for row in keep]

    def _admit(self, admitted: list[_Sequence]) -> None:
        """Run the prompts of newly admitted sequences as one padded batch; join the batch."""
        now = time.monotonic()
        ready = []
        for seq in admitted:
            if seq.aborted:
                self._finished(seq, "abort")
                continue
            if seq.deadline is not None and now > seq.deadline:
                self._deliver(seq, DeadlineExceeded("the request waited past its deadline"))
                self._finished(seq, "deadline")
                continue
            ready.append(seq)
            if self.observer is not None:
                self.observer.on_admitted(now - seq.submitted)
        if not ready:
            return
        fresh = []
        for seq in ready:
            seq.generator = make_generator(seq.params.seed, self.device)
            cache, space = self.prefix_cache, _namespace(seq)
            hit = cache.lookup(seq.prompt_ids, space) if cache is not None else None
            if self.observer is not None and self.prefix_cache is not None:
                self.observer.on_prefix_cache(hit[1] if hit else 0, len(seq.prompt_ids))
            if hit is None:
                fresh.append(seq)
            else:
                self._prefill([seq], hit)
        if fresh:
            self._prefill(fresh, None)

    def _prefill(self, ready: list[_Sequence], hit: tuple[KV, int] | None) -> None:
        """Run prompts (left-padded into one batch), or with ``hit`` one prompt whose first
        tokens' KV is cached (only the rest runs); keep their prefixes; join the batch."""
        import torch

        try:
            if hit is None:
                inputs = prefill_inputs([seq.prompt_ids for seq in ready], self.device)
                with self._adapters_of(ready):
                    out = self._model(**inputs, use_cache=True)
                mask = inputs["attention_mask"]
            else:
                cached, length = hit
                prompt = ready[0].prompt_ids
                mask = torch.ones((1, len(prompt)), dtype=torch.long, device=self.device)
                with self._adapters_of(ready):
                    out = self._model(
                        input_ids=torch.tensor([prompt[length:]], device=self.device),
                        attention_mask=mask,
                        position_ids=torch.arange(length, len(prompt), device=self.device)[None],
                        past_key_values=build_cache(cached, self._model.config),
                        use_cache=True,
                    )
            logits = out.logits[:, -1, :]
            params = [seq.params for seq in ready]
            tokens = sample_next(
                logits,
                params,
                [seq.generator for seq in ready],
                [[]] * len(ready),
                [seq.guide for seq in ready],
            )
            chosen = logprobs_of(logits, tokens, params)
            kv = cache_tensors(out.past_key_values)
        except Exception as exc:
            log.exception("prefill failed in %s", self.config.name)
            for seq in ready:
                self._deliver(seq, _as_error(exc))
                self._finished(seq, "error")
            return
        if self.prefix_cache is not None:
            width = mask.shape[1]
            for row, seq in enumerate(ready):
                start = width - len(seq.prompt_ids)  # left padding
                self.prefix_cache.store(
                    seq.prompt_ids,
                    [(k[row : row + 1, :, start:], v[row : row + 1, :, start:]) for k, v in kv],
                    _namespace(seq),
                )
        rows = [
            row for row, seq in enumerate(ready) if not self._accept(seq, tokens[row], chosen[row])
        ]
        if not rows:
            return
        if len(rows) != len(ready):
            kv = select_rows(kv, rows)
        self._batch.add(kv, mask[rows], [tokens[row] for row in rows])
        self._running.extend(ready[row] for row in rows)

    def _step(self) -> None:
        running = self._running
        try:
            cache = self._batch.cache(self._model.config)
            with self._adapters_of(running, decoding=True):
                out = self._model(
                    **self._batch.step_inputs(), past_key_values=cache, use_cache=True
                )
            logits = out.logits[:, -1, :]
            params = [seq.params for seq in running]
            tokens = sample_next(
                logits,
                params,
                [seq.generator for seq in running],
                [seq.generated for seq in running],
                [seq.guide for seq in running],
            )
            chosen = logprobs_of(logits, tokens, params)
            self._batch.advance(cache_tensors(out.past_key_values), tokens)
        except Exception as exc:
            log.exception("decoding step failed in %s", self.config.name)
            error = _as_error(exc)
            for seq in running:
                self._deliver(seq, error)
                self._finished(seq, "error")
            self._running, self._batch = [], RunningBatch()
            return
        self.steps += 1
        self.max_batch_seen = max(self.max_batch_seen, len(running))
        keep = [
            row
            for row, seq in enumerate(running)
            if not self._accept(seq, tokens[row], chosen[row])
        ]
        if len(keep) != len(running):
            self._batch.keep(keep)
            self._running = [running[row] for row in keep]

    def _adapters_of(
        self, seqs: Sequence[_Sequence], *, decoding: bool = False
    ) -> contextlib.AbstractContextManager[None]:
        """Run the next forward pass with each row's LoRA adapter (nothing to do without)."""
        if self.adapters is None:
            return contextlib.nullcontext()
        return self.adapters.applied([seq.adapter for seq in seqs], decoding=decoding)

    def _accept(self, seq: _Sequence, token: int, logprob: TokenLogprob | None = None) -> bool:
        """Record a sampled token, tell the client, and say whether the sequence is done."""
        if seq.aborted:
            self._finished(seq, "abort")
            return True
        seq.generated.append(token)
        if len(seq.generated) == 1 and self.observer is not None:
            self.observer.on_first_token(time.monotonic() - seq.submitted)
        params = seq.params
        finish: str | None = None
        shown = (logprob,) if logprob is not None else ()
        guide = seq.guide
        if guide is not None and token not in params.stop_token_ids and not guide.consume(token):
            log.error("token %d left the grammar of sequence %d: %s", token, seq.id, guide.error)
            self._deliver(seq, ModelyardError("generation left its grammar"))
            self._finished(seq, "error")
            return True
        if token in params.stop_token_ids:
            text, finish, shown = seq.decoder.flush(seq.generated[:-1]), "stop", ()
        else:
            text, hit = seq.decoder.push(seq.generated)
            if hit:
                finish = "stop"
            elif guide is not None and guide.done:
                # The grammar is complete: only the end token could follow.
                text, finish = text + seq.decoder.flush(seq.generated), "stop"
            elif (
                len(seq.generated) >= params.max_tokens
                or len(seq.prompt_ids) + len(seq.generated) >= self.config.context_length
            ):
                text, finish = text + seq.decoder.flush(seq.generated), "length"
        self._deliver(seq, Delta(text, len(seq.generated), finish, shown))
        if finish is not None:
            self._finished(seq, finish)
        return finish is not None

    def _finished(self, seq: _Sequence, reason: str) -> None:
        if self.observer is not None:
            self.observer.on_finished(
                reason, len(seq.prompt_ids), len(seq.generated), time.monotonic() - seq.submitted
            )


def _namespace(seq: _Sequence) -> str:
    """The prefix-cache namespace of a sequence: its adapter's KV differs from the base's."""
    return seq.adapter.key if seq.adapter is not None else ""


def _as_error(exc: Exception) -> ModelyardError:
    if isinstance(exc, ModelyardError):
        return exc
    return ModelyardError(f"generation failed: {type(exc).__name__}: {exc}")


__all__ = ["Delta", "EngineConfig", "EngineObserver", "GenerationStream", "LLMEngine"]
