"""The serving benchmark's reply decoding and TorchServe config, which decide what it counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from bench.peers.torchserve_peer import config_properties
from bench.serving import oip_binary, oip_output, peer_output, same_output


def test_binary_and_json_oip_replies_decode_to_the_same_output() -> None:
    y = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    raw = y.astype("<f4").tobytes()
    header = json.dumps(
        {"outputs": [{"name": "output", "parameters": {"binary_data_size": len(raw)}}]}
    )
    binary = header.encode() + raw
    as_json = json.dumps({"outputs": [{"name": "output", "data": y.tolist()}]}).encode()
    assert np.array_equal(oip_output(binary), y)
    assert np.array_equal(oip_output(as_json), y)
    assert np.array_equal(peer_output(b'{"output": [0.5, -1.25, 3.0]}'), y)
    assert same_output(y + 1e-6, y)
    assert not same_output(y + 0.1, y)
    assert not same_output(y[:2], y)


def test_token_inputs_go_as_int64() -> None:
    body, _ = oip_binary("input", "output", np.arange(4, dtype=np.int64).reshape(1, 4))
    header, end = json.JSONDecoder().raw_decode(body.decode("latin-1"))
    assert header["inputs"][0]["datatype"] == "INT64"
    assert np.array_equal(np.frombuffer(body[end:], dtype="<i8"), np.arange(4))


def test_torchserve_config_serves_one_batching_worker() -> None:
    text = config_properties("mlp", Path("/store"), (1, 2, 3), batch_size=32, delay_ms=5)
    lines = dict(line.split("=", 1) for line in text.splitlines())
    model = json.loads(lines["models"])["mlp"]["1.0"]
    assert (model["batchSize"], model["maxBatchDelay"], model["maxWorkers"]) == (32, 5, 1)
    assert lines["inference_address"] == "http://127.0.0.1:1"
    assert lines["install_py_dep_per_model"] == "false"
