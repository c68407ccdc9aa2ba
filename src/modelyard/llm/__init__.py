"""Language models and text encoders: loading, continuous-batching generation, embeddings
and fine-tuning. Pure PyTorch / transformers; no HTTP and no database here.

Heavy libraries (torch, transformers, peft) are imported where they are used, so importing
this package is cheap.
"""

from __future__ import annotations

from pathlib import Path

from modelyard.llm.chat import NoChatTemplate, render_chat
from modelyard.llm.embeddings import TextEmbedder
from modelyard.llm.engine import Delta, EngineConfig, GenerationStream, LLMEngine
from modelyard.llm.language_model import LanguageModel
from modelyard.llm.sampling import SamplingParams, TokenLogprob


def load_hf_model(
    folder: Path,
    *,
    kind: str,
    device: str = "auto",
    max_running: int = 32,
    max_queue: int = 1024,
    name: str = "llm",
) -> LanguageModel | TextEmbedder:
    """Load an unpacked ``hf`` version: a :class:`LanguageModel` for ``kind`` ``causal_lm``
    (its engine started), else a :class:`TextEmbedder` (warmed up)."""
    if kind == "causal_lm":
        return LanguageModel.load(
            folder, device=device, max_running=max_running, max_queue=max_queue, name=name
        )
    import numpy as np

    embedder = TextEmbedder(folder, device=device)
    embedder.infer({"text": np.array(["warm up"], dtype=object)})
    return embedder


__all__ = [
    "Delta",
    "EngineConfig",
    "GenerationStream",
    "LLMEngine",
    "LanguageModel",
    "NoChatTemplate",
    "SamplingParams",
    "TextEmbedder",
    "TokenLogprob",
    "load_hf_model",
    "render_chat",
]
