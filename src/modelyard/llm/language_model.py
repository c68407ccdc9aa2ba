"""A causal language model ready to serve: weights, tokenizer, chat template and engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidInput
from modelyard.llm.chat import render_chat
from modelyard.llm.device import pick_device, pick_dtype
from modelyard.llm.engine import EngineConfig, GenerationStream, LLMEngine
from modelyard.llm.grammar import Constraint, GrammarCompiler
from modelyard.llm.lora import AdapterBank, LoraAdapter, read_adapter
from modelyard.llm.sampling import SamplingParams
from modelyard.llm.tools import supports_tools
from modelyard.runtimes.tensors import TensorSpec

DEFAULT_CONTEXT = 2048


def load_causal_lm(folder: Path, device: str = "auto") -> tuple[Any, Any]:
    """(model, tokenizer) from a local Hugging Face folder; never the hub, never its code."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = pick_device(device)
    tokenizer = AutoTokenizer.from_pretrained(
        str(folder), local_files_only=True, trust_remote_code=False
    )
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(folder),
        local_files_only=True,
        trust_remote_code=False,
        use_safetensors=True,
        dtype=pick_dtype(target),
    )
    model.to(target)
    model.eval()
    return model, tokenizer


def context_length_of(model: Any, tokenizer: Any) -> int:
    """Positions the model can attend to (its config, else the tokenizer's limit)."""
    config = model.config
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else DEFAULT_CONTEXT


def _logits_width(model: Any, tokenizer: Any) -> int:
    """Columns of the model's logits (its vocabulary, often padded past the tokenizer's)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    if weight is not None:
        return int(weight.shape[0])
    size = getattr(model.config, "vocab_size", None)
    return int(size) if isinstance(size, int) else len(tokenizer)


class LanguageModel:
    """What the OpenAI endpoints need from a served causal LM.

    Example::

        lm = LanguageModel.load(folder, name="tiny")
        ids = lm.chat_prompt([{"role": "user", "content": "hi"}])
        text = await lm.generate(ids, lm.sampling(max_tokens=8)).text()
    """

    kind = "causal_lm"
    name = "llm"
    inputs = (TensorSpec("prompt", "BYTES", [-1]),)
    outputs = (TensorSpec("text", "BYTES", [-1]),)

    def __init__(self, model: Any, tokenizer: Any, config: EngineConfig) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.engine = LLMEngine(model, self._decode, config)
        eos = tokenizer.eos_token_id
        generation = getattr(model, "generation_config", None)
        extra = getattr(generation, "eos_token_id", None) if generation is not None else None
        ids = {eos} if isinstance(eos, int) else set()
        if isinstance(extra, int):
            ids.add(extra)
        elif isinstance(extra, list):
            ids.update(i for i in extra if isinstance(i, int))
        self.stop_token_ids = frozenset(ids)
        self.grammars = GrammarCompiler(tokenizer, _logits_width(model, tokenizer), sorted(ids))

    @property
    def supports_tools(self) -> bool:
        """Whether the chat template renders tools in the format whose calls are read."""
        return supports_tools(getattr(self.tokenizer, "chat_template", None))

    @classmethod
    def load(
        cls,
        folder: Path,
        *,
        device: str = "auto",
        max_running: int = 32,
        max_queue: int = 1024,
        name: str = "llm",
    ) -> LanguageModel:
        model, tokenizer = load_causal_lm(folder, device)
        config = EngineConfig(
            context_length=context_length_of(model, tokenizer),
            max_running=max_running,
            max_queue=max_queue,
            name=name,
        )
        lm = cls(model, tokenizer, config)
        lm.engine.start()
        return lm

    @property
    def context_length(self) -> int:
        return self.engine.config.context_length

    def _decode(self, ids: Sequence[int]) -> str:
        text: str = self.tokenizer.decode(list(ids), skip_special_tokens=True)
        return text

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        return ids

    def chat_prompt(
        self,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> list[int]:
        """Token ids of the chat template applied to ``messages`` (and ``tools``)."""
        text = render_chat(self.tokenizer, messages, tools)
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def sampling(
        self,
        *,
        max_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        seed: int | None = None,
        logprobs: int | None = None,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        logit_bias: Mapping[int, float] | None = None,
        constraint: Constraint | None = None,
    ) -> SamplingParams:
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=tuple(stop),
            seed=seed,
            stop_token_ids=self.stop_token_ids,
            logprobs=logprobs,
            presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty,
            logit_bias=tuple(sorted((logit_bias or {}).items())),
            constraint=constraint,
        )

    def check_logit_bias(self, bias: Mapping[str, float] | None) -> dict[int, float]:
        """``logit_bias`` with its keys as token ids; InvalidInput naming a key out of range."""
        out: dict[int, float] = {}
        vocab = len(self.tokenizer)
        for key, value in (bias or {}).items():
            if not key.isdigit() or not 0 <= int(key) < vocab:
                raise InvalidInput(
                    f"logit_bias: {key!r} is not a token id of this model (0 to {vocab - 1})",
                    param="logit_bias",
                )
            out[int(key)] = float(value)
        return out

    def token_text(self, token_id: int) -> str:
        """The text of one token alone (a piece of a multi-byte character may show as U+FFFD)."""
        text: str = self.tokenizer.decode([token_id], skip_special_tokens=False)
        return text

    def check_room(self, prompt_tokens: int, max_tokens: int | None, param: str) -> int:
        """The max_tokens to use; InvalidInput when prompt plus max_tokens exceed the context."""
        room = self.context_length - prompt_tokens
        if room <= 0:
            raise InvalidInput(
                f"This model's maximum context length is {self.context_length} tokens; the "
                f"prompt has {prompt_tokens}.",
                param="messages" if param != "prompt" else "prompt",
                code="context_length_exceeded",
            )
        if max_tokens is None:
            return room
        if prompt_tokens + max_tokens > self.context_length:
            raise InvalidInput(
                f"This model's maximum context length is {self.context_length} tokens. However, "
                f"you requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the "
                f"prompt, {max_tokens} for the completion).",
                param=param,
                code="context_length_exceeded",
            )
        return max_tokens

    def generate(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        *,
        deadline: float | None = None,
        adapter: str | LoraAdapter | None = None,
        incremental: bool = True,
    ) -> GenerationStream:
        """Queue a sequence (with an attached LoRA ``adapter``, or the one of that name);
        ``incremental=False`` delivers its output once, when it ends."""
        return self.engine.submit(
            prompt_ids, params, deadline=deadline, adapter=adapter, incremental=incremental
        )

    def attach_adapter(self, folder: Path, name: str) -> LoraAdapter:
        """Read the LoRA adapter saved in ``folder`` and serve it as ``name`` on this model,
        in the same batches as the model itself; the weights stay as they are."""
        parameter = next(self.model.parameters())
        adapter = read_adapter(folder, name, device=parameter.device, dtype=parameter.dtype)
        if self.engine.adapters is None:
            self.engine.adapters = AdapterBank(self.model)
        return self.engine.adapters.attach(adapter)

    def detach_adapter(self, name: str) -> None:
        """Take no more requests for adapter ``name`` (running ones finish with it)."""
        if self.engine.adapters is not None:
            self.engine.adapters.detach(name)

    def close(self) -> None:
        self.engine.close()


__all__ = ["LanguageModel", "context_length_of", "load_causal_lm"]
