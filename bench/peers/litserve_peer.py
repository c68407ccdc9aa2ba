"""The benchmark's model on LitServe with its own batching, in its own virtual environment.

    PYTHONPATH=src .bench-venvs/litserve/bin/python bench/peers/litserve_peer.py PORT \
        WEIGHTS.safetensors --max-batch-size 32 --batch-timeout-ms 5 --threads 2

``POST /predict`` takes ``{"input": [...]}`` (one sample, flattened: floats, or token ids
for a token model) and answers ``{"output": [...]}``; ``GET /health`` says ``ok`` once the
worker has loaded the model. The model is the catalog's own module (``modelyard.nn`` from
``src/``, which needs only torch, pydantic and safetensors), built from the weights' spec.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import litserve as ls
import torch

from modelyard.nn import load_weights, read_weights


class ModelAPI(ls.LitAPI):  # type: ignore[misc]
    def __init__(self, weights: str, threads: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.weights = weights
        self.threads = threads

    def setup(self, device: str) -> None:
        torch.set_num_threads(self.threads)
        _, spec = read_weights(self.weights)
        assert spec is not None, "the weights carry no spec"
        self.model = load_weights(spec, self.weights).eval()
        self.input_shape = list(spec.input_shape)
        self.dtype = torch.long if getattr(spec, "takes_token_ids", False) else torch.float32
        with torch.inference_mode():
            self.model(torch.zeros([1, *self.input_shape], dtype=self.dtype))

    # Unannotated on purpose: LitServe reads the parameter's annotation as the request's
    # pydantic type; without one it parses the JSON body itself, its default and fastest path.
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        x = torch.tensor(request["input"], dtype=self.dtype)
        if x.numel() != math.prod(self.input_shape):
            raise ValueError(f"expected {math.prod(self.input_shape)} values")
        return x.reshape(self.input_shape)

    def batch(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(inputs)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = self.model(x)
            return out

    def unbatch(self, output: torch.Tensor) -> list[torch.Tensor]:
        return list(output)

    def encode_response(self, output: torch.Tensor) -> dict[str, list[float]]:
        return {"output": output.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("weights")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    api = ModelAPI(
        args.weights,
        args.threads,
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout_ms / 1000,
    )
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=60)
    server.run(
        host="127.0.0.1",
        port=args.port,
        num_api_servers=1,
        log_level="warning",
        generate_client_file=False,
    )


if __name__ == "__main__":
    main()
