"""A LoRA adapter served as a model of its own, on a base model loaded once.

:class:`AdaptedLanguageModel` is what a deployment of an adapter version serves: it is the
base's :class:`~modelyard.llm.language_model.LanguageModel` (tokenizer, chat template,
sampling, limits and engine are the base's own objects, not copies) whose sequences run with
the adapter, in the base's batches. Closing it detaches the adapter; the base goes on serving.

When the base is served by another object later (its deployment was reloaded), ``base_of``
gives the new one and the adapter moves onto it before the next request.

Example::

    base = LanguageModel.load(folder, name="tiny")
    mars = AdaptedLanguageModel(base, adapter_folder, "ft-tiny-mars")
    text = await mars.generate(ids, mars.sampling(max_tokens=8)).text()
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from modelyard.llm.engine import GenerationStream
from modelyard.llm.language_model import LanguageModel
from modelyard.llm.lora import AdapterBank, LoraAdapter
from modelyard.llm.sampling import SamplingParams

_OWN = ("name", "adapter", "_base_of", "_lock")


class AdaptedLanguageModel(LanguageModel):
    """A base language model generating with one of its LoRA adapters."""

    def __init__(
        self,
        base: LanguageModel,
        folder: Path,
        name: str,
        base_of: Callable[[], LanguageModel] | None = None,
    ) -> None:
        # No weights or engine of its own: the base's are shared, not copied.
        self._share(base)
        self.name = name
        self.adapter: LoraAdapter = base.attach_adapter(folder, name)
        self._base_of = base_of
        self._lock = threading.Lock()

    def _share(self, base: LanguageModel) -> None:
        own = {k: v for k, v in vars(self).items() if k in _OWN}
        self.__dict__.update(vars(base))
        self.__dict__.update(own)
        self.base = base

    def _current(self) -> LanguageModel:
        """The base to run on: the one ``base_of`` names now (the adapter moved onto it)."""
        if self._base_of is None:
            return self.base
        base = self._base_of()
        with self._lock:
            if base is not self.base:
                if base.engine.adapters is None:
                    base.engine.adapters = AdapterBank(base.model)
                base.engine.adapters.attach(self.adapter)
                self._share(base)
        return base

    def generate(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        *,
        deadline: float | None = None,
        adapter: str | LoraAdapter | None = None,
        incremental: bool = True,
    ) -> GenerationStream:
        # This version's adapter, even while a newer one of the same name is swapped in.
        base = self._current()
        return base.generate(
            prompt_ids,
            params,
            deadline=deadline,
            adapter=adapter or self.adapter,
            incremental=incremental,
        )

    def close(self) -> None:
        """Detach the adapter; the base goes on serving (its own deployment closes it)."""
        bank = self.base.engine.adapters
        if bank is not None and bank.get(self.name) is self.adapter:
            self.base.detach_adapter(self.name)


__all__ = ["AdaptedLanguageModel"]
