"""A TorchServe 0.12 handler for the benchmark's model, archived with its weights.

TorchServe hands the handler a batch (up to ``batchSize`` requests gathered within
``maxBatchDelay`` ms by its Java front end); each request's body is ``{"input": [...]}``,
one sample flattened (floats, or token ids for a token model), and each answer is
``{"output": [...]}``, the same exchange as the LitServe peer. The model is the catalog's
own module (``modelyard.nn``, from ``src/`` on ``PYTHONPATH``), built from the spec in
``model.safetensors`` next to this file in the archive. ``BENCH_TORCH_THREADS`` sets the
worker's torch threads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler

from modelyard.nn import load_weights, read_weights


class ModelHandler(BaseHandler):  # type: ignore[misc]
    def initialize(self, context: Any) -> None:
        torch.set_num_threads(int(os.environ.get("BENCH_TORCH_THREADS", "2")))
        weights = Path(context.system_properties["model_dir"]) / "model.safetensors"
        _, spec = read_weights(weights)
        assert spec is not None, "the weights carry no spec"
        self.model = load_weights(spec, weights).eval()
        self.input_shape = list(spec.input_shape)
        self.dtype = torch.long if getattr(spec, "takes_token_ids", False) else torch.float32
        with torch.inference_mode():
            self.model(torch.zeros([1, *self.input_shape], dtype=self.dtype))
        self.context = context
        self.initialized = True

    def preprocess(self, data: list[dict[str, Any]]) -> torch.Tensor:
        rows = []
        for row in data:
            body = row.get("data") if row.get("data") is not None else row.get("body")
            if isinstance(body, bytes | bytearray):
                body = json.loads(body)
            assert isinstance(body, dict), "expected a JSON object"
            rows.append(torch.tensor(body["input"], dtype=self.dtype).reshape(self.input_shape))
        return torch.stack(rows)

    def inference(self, data: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = self.model(data)
            return out

    def postprocess(self, data: torch.Tensor) -> list[dict[str, list[float]]]:
        return [{"output": row} for row in data.tolist()]
