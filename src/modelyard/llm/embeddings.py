"""Sentence embeddings from an encoder folder (sentence-transformers layout or plain).

Pooling follows ``1_Pooling/config.json`` (mean by default, or the CLS token), and vectors
are L2-normalised when ``modules.json`` lists a ``Normalize`` module. As a runtime it takes
one input, ``text`` (strings), and gives ``embedding`` (float32, one row per text) and
``tokens`` (how many tokens each text had), so the dynamic batcher can batch it and a
pipeline can feed its embeddings to the next model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import InvalidInput
from modelyard.llm.device import pick_device
from modelyard.runtimes.tensors import TensorSpec

DEFAULT_MAX_LENGTH = 512


class TextEmbedder:
    """An encoder with its pooling: ``infer({"text": [...]}) → {"embedding", "tokens"}``."""

    kind = "embedding"
    name = "embedding"

    def __init__(self, folder: Path, device: str = "auto") -> None:
        from transformers import AutoModel, AutoTokenizer

        self.device = pick_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False
        )
        self.model = AutoModel.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False, use_safetensors=True
        )
        self.model.to(self.device)
        self.model.eval()
        self.pooling, self.normalize = _pooling(folder)
        self.max_length = _max_length(folder, self.tokenizer, self.model.config)
        self.dimension = int(self.model.config.hidden_size)
        self.inputs = [TensorSpec("text", "BYTES", None)]
        self.outputs = [
            TensorSpec("embedding", "FP32", [-1, self.dimension]),
            TensorSpec("tokens", "INT64", [-1]),
        ]

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        raw = inputs.get("text")
        if raw is None:
            raw = next(iter(inputs.values())) if len(inputs) == 1 else None
        if raw is None:
            raise InvalidInput("an embedding model takes one input, 'text' (strings)")
        texts = [_as_text(x) for x in np.asarray(raw).reshape(-1)]
        batch = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).float()
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return {
            "embedding": pooled.cpu().numpy().astype(np.float32),
            "tokens": batch["attention_mask"].sum(dim=1).cpu().numpy().astype(np.int64),
        }

    def close(self) -> None:
        self.model = None


def _as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    raise InvalidInput(f"text inputs must be strings, got {type(value).__name__}")


def _pooling(folder: Path) -> tuple[str, bool]:
    mode, normalize = "mean", False
    modules = folder / "modules.json"
    if modules.exists():
        entries = json.loads(modules.read_text(encoding="utf-8"))
        normalize = any(str(e.get("type", "")).endswith("Normalize") for e in entries)
        for entry in entries:
            if str(entry.get("type", "")).endswith("Pooling"):
                config_path = folder / str(entry.get("path", "")) / "config.json"
                if config_path.exists():
                    config = json.loads(config_path.read_text(encoding="utf-8"))
                    if config.get("pooling_mode_cls_token"):
                        mode = "cls"
    return mode, normalize


def _max_length(folder: Path, tokenizer: Any, config: Any) -> int:
    st_config = folder / "sentence_bert_config.json"
    if st_config.exists():
        value = json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(config, "max_position_embeddings", None)
    return limit if isinstance(limit, int) and limit > 0 else DEFAULT_MAX_LENGTH


__all__ = ["TextEmbedder"]
