"""The benchmark's model on LitServe with its own batching, in the peers' virtual environment.

    .venv-peers/bin/python bench/peers/litserve_peer.py PORT WEIGHTS.safetensors \
        --max-batch-size 32 --batch-timeout-ms 2 --threads 2

``POST /predict`` takes ``{"input": [...]}`` (one sample, flattened) and answers
``{"output": [...]}``; ``GET /health`` says ``ok`` once the worker has loaded the model. The
module is rebuilt from the weights' tensor names and shapes, so this script needs neither
Modelyard nor its spec: ``features.<i>.conv`` are 3x3 same-padded convolutions, each with
ReLU and 2x2 max pooling; ``layers.<i>.linear`` dense layers with ReLU; then ``head``.
"""

from __future__ import annotations

import argparse
import json
import math

import litserve as ls
import torch
from safetensors import safe_open
from torch import nn


class ConvBlock(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        out_channels, in_channels, kernel, _ = weight.shape
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding="same")
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.conv(x)))


class DenseBlock(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(x))


class Net(nn.Module):
    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        convs = sorted(k for k in state if k.startswith("features.") and k.endswith("conv.weight"))
        dense = sorted(k for k in state if k.startswith("layers.") and k.endswith("linear.weight"))
        self.features = nn.ModuleList(ConvBlock(state[k]) for k in convs)
        self.layers = nn.ModuleList(DenseBlock(state[k]) for k in dense)
        self.head = nn.Linear(state["head.weight"].shape[1], state["head.weight"].shape[0])
        self.load_state_dict(state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.features:
            x = block(x)
        x = x.flatten(1)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


class ModelAPI(ls.LitAPI):
    def __init__(self, weights: str, threads: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.weights = weights
        self.threads = threads

    def setup(self, device: str) -> None:
        torch.set_num_threads(self.threads)
        with safe_open(self.weights, framework="pt") as handle:
            state = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
            spec = json.loads((handle.metadata() or {})["modelyard.spec"])
        self.input_shape = list(spec["input_shape"])
        self.model = Net(state).eval()
        with torch.inference_mode():
            self.model(torch.zeros([1, *self.input_shape]))

    def decode_request(self, request: dict) -> torch.Tensor:
        x = torch.tensor(request["input"], dtype=torch.float32)
        if x.numel() != math.prod(self.input_shape):
            raise ValueError(f"expected {math.prod(self.input_shape)} values")
        return x.reshape(self.input_shape)

    def batch(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(inputs)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(x)

    def unbatch(self, output: torch.Tensor) -> list[torch.Tensor]:
        return list(output)

    def encode_response(self, output: torch.Tensor) -> dict[str, list[float]]:
        return {"output": output.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("weights")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout-ms", type=float, default=2.0)
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
