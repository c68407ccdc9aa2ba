"""The Open Inference Protocol over gRPC, through a real ``modelyard serve`` process, called
with the real, unchanged ``tritonclient.grpc`` and compared with HTTP ``/v2`` answers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.api.conftest import user_client
from tests.serving.conftest import MLP, deploy, forward, push_catalog
from tests.support.process import server_process
from tests.support.server import ADMIN_KEY, free_port


@dataclass
class Served:
    url: str
    grpc_url: str
    api: httpx.Client
    mlp: Any  # the torch module deployed as "mlp"
    tmp: Path

    def grpc_client(self) -> tgrpc.InferenceServerClient:
        return tgrpc.InferenceServerClient(self.grpc_url)

    def http_client(self) -> thttp.InferenceServerClient:
        return thttp.InferenceServerClient(self.url.removeprefix("http://"))


AUTH = {"authorization": f"Bearer {ADMIN_KEY}"}
MAX_INFER_BYTES = 1024**2


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("grpc")
    port = free_port()
    with (
        server_process(
            tmp / "data",
            tmp / "server.log",
            MODELYARD_GRPC_PORT=str(port),
            MODELYARD_MAX_INFER_BYTES=str(MAX_INFER_BYTES),
        ) as srv,
        httpx.Client(base_url=srv.url, headers=AUTH, timeout=120) as api,
    ):
        mlp = push_catalog(api, "mlp", MLP, tmp)
        deploy(api, "mlp", model="mlp", version=1)
        yield Served(srv.url, f"127.0.0.1:{port}", api, mlp, tmp)


def status_of(caught: pytest.ExceptionInfo[InferenceServerException]) -> str:
    return str(caught.value.status())


def grpc_input(x: np.ndarray, name: str = "input", datatype: str = "FP32") -> tgrpc.InferInput:
    tensor = tgrpc.InferInput(name, list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    return tensor


def http_binary_infer(served: Served, x: np.ndarray, datatype: str = "FP32") -> httpx.Response:
    """The HTTP /v2 request tritonclient.http sends for ``x`` as binary tensor data."""
    tensor = thttp.InferInput("input", list(x.shape), datatype)
    tensor.set_data_from_numpy(x, binary_data=True)
    body, json_size = thttp.InferenceServerClient.generate_request_body([tensor])
    return served.api.post(
        "/v2/models/mlp/infer",
        content=bytes(body),
        headers={"Inference-Header-Content-Length": str(json_size)},
    )


def test_tritonclient_grpc_answers_what_http_answers(served: Served) -> None:
    client = served.grpc_client()
    http = served.http_client()
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata(headers=AUTH, as_json=True)
    assert meta["name"] == "modelyard" and meta["version"]
    assert client.is_model_ready("mlp", headers=AUTH)
    assert client.is_model_ready("mlp", "1", headers=AUTH)

    ours = client.get_model_metadata("mlp", headers=AUTH, as_json=True)
    theirs = http.get_model_metadata("mlp", headers=AUTH)
    assert ours["name"] == theirs["name"] == "mlp"
    assert ours["versions"] == theirs["versions"] == ["1"]
    assert ours["platform"] == theirs["platform"]
    for side in ("inputs", "outputs"):
        # MessageToJson writes int64 values as strings.
        got = [{**t, "shape": [int(d) for d in t["shape"]]} for t in ours[side]]
        assert got == theirs[side]
    versioned = client.get_model_metadata("mlp", "1", headers=AUTH, as_json=True)
    assert versioned["inputs"] == ours["inputs"]

    x = np.random.default_rng(0).normal(size=(5, 64)).astype(np.float32)
    result = client.infer("mlp", [grpc_input(x)], headers=AUTH, request_id="r-1")
    response = result.get_response()
    assert len(response.raw_output_contents) == 1  # tritonclient sent raw contents
    assert (response.model_name, response.model_version, response.id) == ("mlp", "1", "r-1")
    over_grpc = result.as_numpy("output")
    assert over_grpc.dtype == np.float32 and over_grpc.shape == (5, 10)

    tensor = thttp.InferInput("input", [5, 64], "FP32")
    tensor.set_data_from_numpy(x, binary_data=False)
    over_http = http.infer("mlp", [tensor], headers=AUTH).as_numpy("output")
    np.testing.assert_array_equal(over_grpc, over_http)
    np.testing.assert_allclose(over_grpc, forward(served.mlp, x), atol=1e-4)

    pinned = client.infer(
        "mlp",
        [grpc_input(x)],
        model_version="1",
        outputs=[tgrpc.InferRequestedOutput("output")],
        headers=AUTH,
    )
    np.testing.assert_array_equal(pinned.as_numpy("output"), over_grpc)


def test_typed_contents_are_answered_in_typed_contents(served: Served) -> None:
    x = np.random.default_rng(1).normal(size=(2, 64)).astype(np.float32)
    request = service_pb2.ModelInferRequest(model_name="mlp")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[2, 64])
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    with grpc.insecure_channel(served.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(request, metadata=tuple(AUTH.items()))
    assert not response.raw_output_contents
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("output", "FP32", [2, 10])
    got = np.asarray(output.contents.fp32_contents, dtype=np.float32).reshape(2, 10)
    raw = served.grpc_client().infer("mlp", [grpc_input(x)], headers=AUTH).as_numpy("output")
    np.testing.assert_array_equal(got, raw)


def test_keys_scopes_and_access_are_those_of_http(served: Served) -> None:
    client = served.grpc_client()
    x = np.zeros((1, 64), dtype=np.float32)

    def infer(headers: dict[str, str] | None) -> None:
        client.infer("mlp", [grpc_input(x)], headers=headers)

    assert client.is_server_live()  # open without a key, like /v2/health/live
    for headers in (None, {"authorization": "Bearer my_not-a-key"}, {"authorization": "x"}):
        with pytest.raises(InferenceServerException) as caught:
            infer(headers)
        assert status_of(caught) == "StatusCode.UNAUTHENTICATED"
    with pytest.raises(InferenceServerException) as caught:
        client.get_server_metadata()
    assert status_of(caught) == "StatusCode.UNAUTHENTICATED"
    assert "Bearer" in caught.value.message()

    reader = user_client(served.api, "grpc-reader", ["read"])
    caller = user_client(served.api, "grpc-caller", ["infer"])
    row = {"inputs": [[0.0] * 64]}
    for http_client, status, code in (
        (reader, 403, "StatusCode.PERMISSION_DENIED"),
        (caller, 404, "StatusCode.NOT_FOUND"),
    ):
        reply = http_client.post("/v2/models/mlp/infer", json=row)
        assert reply.status_code == status
        headers = {"authorization": http_client.headers["authorization"]}
        for call in (
            lambda h=headers: infer(h),
            lambda h=headers: client.get_model_metadata("mlp", headers=h),
            lambda h=headers: client.is_model_ready("mlp", headers=h),
        ):
            with pytest.raises(InferenceServerException) as caught:
                call()
            assert status_of(caught) == code
            assert caught.value.message() == reply.json()["detail"]
    acl = {"public": False, "grants": [{"principal": "grpc-caller", "permission": "read"}]}
    assert served.api.put("/api/v1/deployments/mlp/acl", json=acl).status_code == 200
    infer({"authorization": caller.headers["authorization"]})


def test_bad_input_is_invalid_argument_with_the_http_message(served: Served) -> None:
    client = served.grpc_client()
    refused = [
        (np.zeros((1, 63), dtype=np.float32), "FP32"),  # wrong shape
        (np.array([[b"a"] * 64], dtype=object), "BYTES"),  # wrong datatype
        (np.full((1, 64), np.nan, dtype=np.float32), "FP32"),
    ]
    for x, datatype in refused:
        reply = http_binary_infer(served, x, datatype)
        assert reply.status_code == 422, reply.text
        with pytest.raises(InferenceServerException) as caught:
            client.infer("mlp", [grpc_input(x, datatype=datatype)], headers=AUTH)
        assert status_of(caught) == "StatusCode.INVALID_ARGUMENT"
        assert caught.value.message() == reply.json()["detail"]
    # What HTTP converts (float64 to the model's float32), gRPC converts too.
    x = np.random.default_rng(2).normal(size=(1, 64))
    reply = http_binary_infer(served, x, "FP64")
    assert reply.status_code == 200, reply.text
    got = client.infer("mlp", [grpc_input(x, datatype="FP64")], headers=AUTH).as_numpy("output")
    np.testing.assert_allclose(got, forward(served.mlp, x.astype(np.float32)), atol=1e-4)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("mlp", [grpc_input(np.zeros((1, 63), dtype=np.float32))], headers=AUTH)
    assert "input" in caught.value.message() and "63" in caught.value.message()

    x = np.zeros((1, 64), dtype=np.float32)
    for name, version, what in (("nope", "", "deployment"), ("mlp", "7", "version '7'")):
        with pytest.raises(InferenceServerException) as caught:
            client.infer(name, [grpc_input(x)], model_version=version, headers=AUTH)
        assert status_of(caught) == "StatusCode.NOT_FOUND" and what in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        client.is_model_ready("mlp", "7", headers=AUTH)
    assert status_of(caught) == "StatusCode.NOT_FOUND"
    wanted = [tgrpc.InferRequestedOutput("probabilities")]
    with pytest.raises(InferenceServerException) as caught:
        client.infer("mlp", [grpc_input(x)], outputs=wanted, headers=AUTH)
    assert status_of(caught) == "StatusCode.INVALID_ARGUMENT"
    assert "'probabilities' was requested" in caught.value.message()
    huge = np.zeros((MAX_INFER_BYTES // 256 + 1, 64), dtype=np.float32)
    assert http_binary_infer(served, huge).status_code == 413
    with pytest.raises(InferenceServerException) as caught:
        client.infer("mlp", [grpc_input(huge)], headers=AUTH)
    assert status_of(caught) == "StatusCode.RESOURCE_EXHAUSTED"
    # The deployment goes on serving.
    assert client.infer("mlp", [grpc_input(x)], headers=AUTH).as_numpy("output").shape == (1, 10)


def _sample(metrics: str, name: str, **labels: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_grpc_requests_with_http_ones(served: Served) -> None:
    push_catalog(served.api, "counted", MLP, served.tmp)
    deploy(served.api, "counted", model="counted")
    client = served.grpc_client()
    x = np.ones((1, 64), dtype=np.float32)
    for _ in range(3):
        client.infer("counted", [grpc_input(x)], headers=AUTH)
    for _ in range(2):
        reply = served.api.post("/api/v1/deployments/counted/predict", json={"inputs": [[1] * 64]})
        assert reply.status_code == 200
    with pytest.raises(InferenceServerException):
        client.infer("counted", [grpc_input(np.ones((1, 3), dtype=np.float32))], headers=AUTH)
    metrics = served.api.get("/metrics").text
    inference = "modelyard_inference_requests_total"
    assert _sample(metrics, inference, deployment="counted", outcome="ok") == 5
    assert _sample(metrics, "modelyard_grpc_requests_total", method="ModelInfer", code="OK") >= 3
    invalid = _sample(
        metrics, "modelyard_grpc_requests_total", method="ModelInfer", code="INVALID_ARGUMENT"
    )
    assert invalid >= 1
    duration = "modelyard_grpc_request_duration_seconds_count"
    assert _sample(metrics, duration, method="ModelInfer") >= 4
    predict = "/api/v1/deployments/{name}/predict"
    assert _sample(metrics, "modelyard_http_requests_total", route=predict, status="200") >= 2


def test_overload_is_resource_exhausted_and_deadlines_deadline_exceeded(served: Served) -> None:
    # About 70 MB of weights read per batch: a burst queues up behind the batch computing.
    big = {"arch": "mlp", "input_shape": [64], "hidden": [4096, 4096], "num_outputs": 10}
    push_catalog(served.api, "big", big, served.tmp)
    deploy(served.api, "slow", model="big", max_batch_size=64, max_queue=3)
    deploy(served.api, "tight", model="big", max_batch_size=1, timeout_ms=1)
    x = np.full((1, 64), 0.1, dtype=np.float32)

    request = service_pb2.ModelInferRequest()
    request.inputs.add(name="input", datatype="FP32", shape=[1, 64])
    request.raw_input_contents.append(x.tobytes())

    async def burst(name: str, n: int) -> list[str]:
        """Send ``n`` requests at once with Triton's own stub; each one's status code (and
        the retry-after trailer of a refused one)."""
        request.model_name = name
        async with grpc.aio.insecure_channel(served.grpc_url) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

            async def one() -> str:
                try:
                    await stub.ModelInfer(request, metadata=tuple(AUTH.items()))
                except grpc.aio.AioRpcError as exc:
                    trailers = dict(exc.trailing_metadata() or ())
                    refused = exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    return exc.code().name + (f" {trailers.get('retry-after')}" if refused else "")
                return "OK"

            return list(await asyncio.gather(*[one() for _ in range(n)]))

    codes = asyncio.run(burst("slow", 10))
    assert "OK" in codes and "RESOURCE_EXHAUSTED 1" in codes, codes
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED 1"}, codes
    codes = asyncio.run(burst("tight", 10))
    assert "DEADLINE_EXCEEDED" in codes and set(codes) <= {"OK", "DEADLINE_EXCEEDED"}, codes
