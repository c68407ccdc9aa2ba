"""A LoRA adapter served as a model of its own, on a base model loaded once.

:class:`AdaptedLanguageModel` is what a deployment of an adapter version serves: it answers
like a :class:`~modelyard.llm.language_model.LanguageModel` (tokenizer, chat template,
sampling and limits are the base's) but its sequences run with the adapter, in the base's
engine and batches. Closing it detaches the adapter and leaves the base serving.

Example::

    base = LanguageModel.load(folder, name="tiny")
    mars = AdaptedLanguageModel(base, adapter_folder, "ft-tiny-mars")
    text = await mars.generate(ids, mars.sampling(max_tokens=8)).text()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelyard.llm.engine import GenerationStream
from modelyard.llm.language_model import LanguageModel
from modelyard.llm.lora import LoraAdapter
from modelyard.llm.sampling import SamplingParams
from modelyard.runtimes.tensors import TensorSpec


class AdaptedLanguageModel:
    """A base language model's interface, generating with one of its LoRA adapters."""

    kind = "causal_lm"
    inputs: tuple[TensorSpec, ...] = LanguageModel.inputs
    outputs: tuple[TensorSpec, ...] = LanguageModel.outputs

    def __init__(self, base: LanguageModel, folder: Path, name: str) -> None:
        self.base = base
        self.name = name
        self.adapter: LoraAdapter = base.attach_adapter(folder, name)

    def __getattr__(self, attribute: str) -> Any:
        # Everything but generation is the base's: tokenizer, templates, sampling, limits.
        return getattr(self.base, attribute)

    def generate(
        self, prompt_ids: list[int], params: SamplingParams, *, deadline: float | None = None
    ) -> GenerationStream:
        return self.base.generate(prompt_ids, params, deadline=deadline, adapter=self.name)

    def close(self) -> None:
        """Detach the adapter; the base goes on serving (it is closed by its own deployment)."""
        if self.base.engine.adapters is not None:
            current = self.base.engine.adapters.get(self.name)
            if current is self.adapter:
                self.base.detach_adapter(self.name)


__all__ = ["AdaptedLanguageModel"]
