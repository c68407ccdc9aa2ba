"""The benchmark's model behind a bare FastAPI endpoint on uvicorn: no batching, no checks.

    python -m bench.peers.bare PORT WEIGHTS.safetensors -t 2

``POST /infer`` takes the same Open Inference Protocol request as Modelyard (one FP32 or
INT64 input as binary tensor data, or as JSON ``data``), runs the model on it at once on the
event loop, and answers its first output the way it was asked for; ``GET /ready`` answers
once the model is loaded. What a user would write in a few lines, started as Modelyard
starts its own: the cost of the model plus the HTTP transport, with nothing of a platform
around it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, Request, Response

from modelyard.nn import load_weights, read_weights


def create_app(weights: str) -> FastAPI:
    _, spec = read_weights(weights)
    assert spec is not None, "the weights carry no spec"
    model = load_weights(spec, weights).eval()
    with torch.inference_mode():
        model(torch.zeros([1, *spec.input_shape]))
    app = FastAPI()

    @app.get("/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/infer")
    async def infer(request: Request) -> Response:
        body = await request.body()
        length = request.headers.get("inference-header-content-length")
        end = int(length) if length is not None else len(body)
        tensor = json.loads(body[:end])["inputs"][0]
        dtype = "<i8" if tensor.get("datatype") == "INT64" else "<f4"
        if end < len(body):
            x = np.frombuffer(body, dtype=dtype, offset=end)
        else:
            x = np.asarray(tensor["data"], dtype=dtype)
        with torch.inference_mode():
            y = model(torch.from_numpy(x.reshape(tensor["shape"]))).numpy()
        output: dict[str, Any] = {"name": "output", "datatype": "FP32", "shape": list(y.shape)}
        if end == len(body):
            output["data"] = y.reshape(-1).tolist()
            return Response(json.dumps({"outputs": [output]}), media_type="application/json")
        raw = y.astype("<f4").tobytes()
        output["parameters"] = {"binary_data_size": len(raw)}
        header = json.dumps({"outputs": [output]}).encode()
        return Response(
            header + raw,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(len(header))},
        )

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("weights")
    parser.add_argument("-t", "--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    uvicorn.run(create_app(args.weights), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
