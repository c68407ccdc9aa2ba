"""Unit tests of deployments in the SDK against httpx.MockTransport: request shapes of
deploy, update and predict (JSON and binary tensors), answers, and error mapping."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from modelyard.client import (
    Client,
    Deployment,
    ModelyardError,
    NotFoundError,
    RateLimitError,
    ServerError,
    TensorInfo,
    ValidationError,
)
from modelyard.client._inference import BINARY_THRESHOLD
from modelyard.client._oip import decode_response, encode_request
from modelyard.serving import oip as server_oip

BASE = "http://modelyard.test"
WHEN = "2024-05-01T12:00:00+00:00"
OWNER = {"id": "p" * 32, "name": "alice"}
SPEC = {
    "model": "mlp",
    "version": "latest",
    "traffic": None,
    "pipeline": None,
    "runtime": "auto",
    "device": "auto",
    "replicas": 1,
    "max_batch_size": 32,
    "max_batch_delay_ms": 2.0,
    "max_queue": 1024,
    "timeout_ms": 30000.0,
    "postprocess": {"softmax": False, "top_k": None},
}

Handler = Callable[[httpx.Request], httpx.Response]


def served(version: int = 1, weight: float = 1.0, **tensors: Any) -> dict[str, Any]:
    return {
        "version": version,
        "weight": weight,
        "runtime": "torch",
        "inputs": tensors.get("inputs", [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]),
        "outputs": tensors.get(
            "outputs", [{"name": "logits", "datatype": "FP32", "shape": [-1, 3]}]
        ),
    }


def deployment_json(name: str = "mlp", **extra: Any) -> dict[str, Any]:
    return {
        "id": "e" * 32,
        "name": name,
        "spec": dict(SPEC),
        "status": "ready",
        "error": None,
        "versions": [served()],
        "owner": OWNER,
        "public": False,
        "created_at": WHEN,
        "updated_at": WHEN,
        **extra,
    }


class Recorder:
    def __init__(self, answer: Handler) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def reply(status: int = 200, body: Any = None, **kwargs: Any) -> Handler:
    return lambda _request: httpx.Response(status, json=body, **kwargs)


@pytest.fixture
def connect() -> Iterator[Callable[[Handler], tuple[Client, Recorder]]]:
    clients: list[Client] = []

    def make(answer: Handler) -> tuple[Client, Recorder]:
        recorder = Recorder(answer)
        client = Client(BASE, "my_key", transport=httpx.MockTransport(recorder))
        clients.append(client)
        return client, recorder

    yield make
    for client in clients:
        client.close()


def handle(client: Client, **extra: Any) -> Deployment:
    """A Deployment handle as the server would have answered it."""
    return Deployment(client.deployments, deployment_json(**extra))


# -- deploy and the deployment resource ----------------------------------------------------


def test_deploy_sends_the_documented_body_and_parses_the_deployment(connect: Any) -> None:
    client, rec = connect(reply(201, deployment_json()))
    deployment = client.deploy("mlp", "mlp")
    assert (rec.last.method, rec.last.url.path) == ("POST", "/api/v1/deployments")
    # Only what the caller set is sent: the server's spec holds the one set of defaults.
    assert rec.body() == {"name": "mlp", "model": "mlp", "version": "latest"}
    client.deploy("mlp", "mlp", max_batch_size=8, timeout_ms=500)
    assert rec.body() == {
        "name": "mlp",
        "model": "mlp",
        "version": "latest",
        "max_batch_size": 8,
        "timeout_ms": 500,
    }
    assert (deployment.name, deployment.status, deployment.model) == ("mlp", "ready", "mlp")
    assert deployment.ready
    assert deployment.pipeline is None
    [version] = deployment.versions
    assert (version.version, version.weight, version.runtime) == (1, 1.0, "torch")
    assert version.inputs == (TensorInfo(name="x", datatype="FP32", shape=(-1, 4)),)
    assert deployment.owner is not None and deployment.owner.name == "alice"
    assert repr(deployment) == "Deployment(name='mlp', status='ready', versions=[v1])"


@pytest.mark.parametrize(
    ("model", "version", "sent"),
    [
        ("mlp@production", "latest", ("mlp", "production")),
        ("mlp@3", "latest", ("mlp", "3")),
        ("mlp", 2, ("mlp", "2")),
        ("mlp@2", 2, ("mlp", "2")),
    ],
)
def test_deploy_takes_the_name_at_version_shorthand(
    connect: Any, model: str, version: int | str, sent: tuple[str, str]
) -> None:
    client, rec = connect(reply(201, deployment_json()))
    client.deploy("d", model, version=version)
    assert (rec.body()["model"], rec.body()["version"]) == sent


def test_deploy_sends_traffic_pipeline_and_postprocessing(connect: Any) -> None:
    client, rec = connect(reply(201, deployment_json()))
    wire = [{"version": "1", "weight": 90.0}, {"version": "production", "weight": 10.0}]
    for traffic in (
        {1: 90, "production": 10},
        [(1, 90), ("production", 10)],
        [{"version": 1, "weight": 90}, {"version": "production", "weight": 10}],
    ):
        client.deploy("canary", "mlp", traffic=traffic, postprocess={"softmax": True, "top_k": 3})
        assert rec.body()["traffic"] == wire
        assert rec.body()["postprocess"] == {"softmax": True, "top_k": 3}
    client.deploy("chain", pipeline=["embed", "classify"], max_batch_size=8)
    body = rec.body()
    assert body["pipeline"] == ["embed", "classify"]
    assert "model" not in body and "version" not in body
    assert body["max_batch_size"] == 8
    client.deploy("chain", pipeline="embed, classify")
    assert rec.body()["pipeline"] == ["embed", "classify"]


def test_deploy_refuses_contradictions_before_sending(connect: Any) -> None:
    client, rec = connect(reply(201, deployment_json()))
    with pytest.raises(ValueError, match=r"model .* or a pipeline"):
        client.deploy("d")
    with pytest.raises(ValueError, match=r"model .* or a pipeline"):
        client.deploy("d", "mlp", pipeline=["a", "b"])
    with pytest.raises(ValueError, match="names version '2'"):
        client.deploy("d", "mlp@2", version=3)
    with pytest.raises(ValueError, match="expected a model name"):
        client.deploy("d", "mlp@")
    assert rec.requests == []


def test_list_get_update_delete_and_acl(connect: Any) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/api/v1/deployments":
            return httpx.Response(200, json={"items": [deployment_json("a")], "total": 1})
        if request.url.path.endswith("/acl"):
            return httpx.Response(200, json={"public": True, "grants": []})
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(200, json=deployment_json("a b", versions=[served(2)]))

    client, rec = connect(answer)
    assert [d.name for d in client.deployments.list()] == ["a"]
    got = client.deployments.get("a b")
    assert rec.last.url.raw_path == b"/api/v1/deployments/a%20b"
    assert [v.version for v in got.versions] == [2]

    client.deployments.update("a", version=2, traffic=None)
    assert (rec.last.method, rec.last.url.path) == ("PATCH", "/api/v1/deployments/a")
    assert rec.body() == {"version": "2", "traffic": None}
    client.deployments.update("a", model="other@staging", max_batch_size=4)
    assert rec.body() == {"model": "other", "version": "staging", "max_batch_size": 4}
    client.deployments.update("a", traffic={2: 1, 3: 1})
    assert rec.body() == {
        "traffic": [{"version": "2", "weight": 1.0}, {"version": "3", "weight": 1.0}]
    }
    with pytest.raises(ValueError, match="needs a change"):
        client.deployments.update("a")

    assert client.deployments.get_acl("a").public is True
    assert rec.last.url.path == "/api/v1/deployments/a/acl"
    client.deployments.set_acl("a", grants=[{"principal": "bob", "permission": "read"}])
    assert rec.last.method == "PUT"
    assert rec.body() == {"public": False, "grants": [{"principal": "bob", "permission": "read"}]}
    client.deployments.delete("a")
    assert (rec.last.method, rec.last.url.path) == ("DELETE", "/api/v1/deployments/a")


def test_the_handle_refreshes_updates_and_deletes_itself(connect: Any) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(
            200, json=deployment_json(status="ready", versions=[served(2), served(3)])
        )

    client, rec = connect(answer)
    deployment = handle(client, status="loading", versions=[])
    assert deployment.refresh() is deployment
    assert rec.last.url.path == "/api/v1/deployments/mlp"
    assert [v.version for v in deployment.versions] == [2, 3]
    assert deployment.update(version="production") is deployment
    assert (rec.last.method, rec.body()) == ("PATCH", {"version": "production"})
    deployment.delete()
    assert (rec.last.method, rec.last.url.path) == ("DELETE", "/api/v1/deployments/mlp")


# -- predict: JSON -----------------------------------------------------------------------


def predict_answer(outputs: dict[str, Any], version: int | None = 1) -> Handler:
    body = {"deployment": "mlp", "model_version": version, "outputs": outputs}
    return reply(200, body)


def test_a_small_array_goes_as_json_and_the_single_output_comes_back_as_an_array(
    connect: Any,
) -> None:
    client, rec = connect(predict_answer({"logits": [[0.5, 1.5, -2.0]]}))
    x = np.array([[1, 2, 3, 4]], dtype=np.int64)
    out = handle(client).predict(x)
    assert (rec.last.method, rec.last.url.path) == ("POST", "/api/v1/deployments/mlp/predict")
    # The model declares FP32, so integers are sent as floats.
    assert rec.body() == {"inputs": [[1.0, 2.0, 3.0, 4.0]]}
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0.5, 1.5, -2.0]])


def test_named_inputs_give_named_outputs_with_declared_dtypes(connect: Any) -> None:
    outputs = {"logits": [[1.0, 2.0, 3.0]], "top_k_indices": [[2, 1]], "probabilities": [[0.5]]}
    client, rec = connect(predict_answer(outputs))
    int_out = served(outputs=[{"name": "logits", "datatype": "FP64", "shape": [-1, 3]}])
    deployment = handle(client, versions=[int_out])
    out = deployment.predict({"x": [[0.0, 1.0, 2.0, 3.0]]}, version=1)
    assert rec.body() == {"inputs": {"x": [[0.0, 1.0, 2.0, 3.0]]}, "version": "1"}
    assert isinstance(out, dict)
    assert sorted(out) == ["logits", "probabilities", "top_k_indices"]
    assert out["logits"].dtype == np.float64  # declared by the version that answered
    assert out["probabilities"].dtype == np.float32  # added by postprocessing
    assert out["top_k_indices"].dtype == np.int64


def test_floats_for_an_integer_input_are_not_truncated(connect: Any) -> None:
    client, rec = connect(predict_answer({"logits": [[1.0]]}))
    ids = served(inputs=[{"name": "tokens", "datatype": "INT64", "shape": [-1, 2]}])
    deployment = handle(client, versions=[ids])
    deployment.predict(np.array([[1.5, 2.0]]))
    assert rec.body() == {"inputs": [[1.5, 2.0]]}  # for the server to refuse, naming it
    deployment.predict(np.array([[1, 2]], np.int32))
    assert rec.body() == {"inputs": [[1, 2]]}


def test_several_outputs_from_one_array_come_back_as_a_dict(connect: Any) -> None:
    client, _ = connect(predict_answer({"logits": [[1.0]], "probabilities": [[1.0]]}))
    out = handle(client).predict(np.zeros((1, 4), np.float32))
    assert isinstance(out, dict)
    assert sorted(out) == ["logits", "probabilities"]


# -- predict: binary tensors --------------------------------------------------------------


def binary_answer(outputs: dict[str, np.ndarray], recorder: list[Any]) -> Handler:
    """Decode the request with the server's own codec and answer with its encoder."""

    def answer(request: httpx.Request) -> httpx.Response:
        length = request.headers.get("inference-header-content-length")
        decoded = server_oip.decode_request(request.content, int(length) if length else None)
        recorder.append(decoded)
        body, headers = server_oip.encode_response(
            model_name="mlp",
            model_version="1",
            request_id=decoded.id,
            outputs=outputs,
            requested=decoded.outputs,
            binary_default=decoded.binary_default,
        )
        return httpx.Response(200, content=body, headers=headers)

    return answer


def test_a_large_batch_goes_as_binary_tensors(connect: Any) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 4))  # float64: cast to the declared FP32
    assert x.astype(np.float32).nbytes > BINARY_THRESHOLD
    logits = rng.normal(size=(5000, 3)).astype(np.float32)
    decoded: list[Any] = []
    client, rec = connect(binary_answer({"logits": logits}, decoded))
    out = handle(client).predict(x)
    assert (rec.last.method, rec.last.url.path) == ("POST", "/v2/models/mlp/infer")
    assert rec.last.headers["content-type"] == "application/octet-stream"
    [request] = decoded
    [tensor] = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("x", "FP32", [5000, 4])
    np.testing.assert_array_equal(tensor.array, x.astype(np.float32))
    assert request.binary_default is True
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, logits)
    out.flags.writeable = True  # a copy the caller owns, not a view of the answer


def test_binary_can_be_forced_and_pins_a_version(connect: Any) -> None:
    decoded: list[Any] = []
    outputs = {"ids": np.array([[3], [1]], np.int64), "names": np.array([b"a", b"b"], object)}
    client, rec = connect(binary_answer(outputs, decoded))
    inputs = {"x": np.ones((2, 4), np.float32), "mask": np.array([[True], [False]])}
    out = handle(client).predict(inputs, version=1, binary=True)
    assert rec.last.url.path == "/v2/models/mlp/versions/1/infer"
    assert [(t.name, t.datatype) for t in decoded[0].inputs] == [("x", "FP32"), ("mask", "BOOL")]
    assert isinstance(out, dict)
    np.testing.assert_array_equal(out["ids"], [[3], [1]])
    assert out["names"].tolist() == [b"a", b"b"]


def test_values_json_cannot_carry_go_as_binary(connect: Any) -> None:
    decoded: list[Any] = []
    client, rec = connect(binary_answer({"logits": np.zeros((1, 3), np.float32)}, decoded))
    handle(client).predict(np.array([[np.nan, 0, 0, np.inf]], np.float32))
    assert rec.last.url.path == "/v2/models/mlp/infer"
    assert np.isnan(decoded[0].inputs[0].array[0, 0])


def test_the_input_name_comes_from_the_metadata_when_the_handle_has_none(connect: Any) -> None:
    decoded: list[Any] = []
    infer = binary_answer({"output": np.zeros((1, 2), np.float32)}, decoded)
    metadata = {"name": "p", "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1]}]}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=metadata)
        return infer(request)

    client, rec = connect(answer)
    pipeline = handle(client, versions=[], spec={**SPEC, "model": None, "pipeline": ["a", "b"]})
    assert pipeline.pipeline == ["a", "b"]
    pipeline.predict(np.zeros((1, 2), np.float32), binary=True)
    assert [(r.method, r.url.path) for r in rec.requests] == [
        ("GET", "/v2/models/mlp"),
        ("POST", "/v2/models/mlp/infer"),
    ]
    assert decoded[0].inputs[0].name == "input"


def test_one_array_for_a_model_of_several_inputs_asks_for_names(connect: Any) -> None:
    client, rec = connect(reply(200, {}))
    two = served(inputs=[{"name": "a", "datatype": "FP32"}, {"name": "b", "datatype": "FP32"}])
    with pytest.raises(ValueError, match="pass a dict"):
        handle(client, versions=[two]).predict(np.zeros((1, 1)), binary=True)
    assert rec.requests == []


def test_the_codec_round_trips_every_datatype() -> None:
    arrays = {
        "f16": np.array([[1.5, -2]], np.float16),
        "f64": np.array([np.pi]),
        "u8": np.arange(6, dtype=np.uint8).reshape(2, 3),
        "i32": np.array([-7], np.int32),
        "b": np.array([True, False]),
        "s": np.array(["héllo", ""], object),
        "empty": np.zeros((0, 4), np.float32),
    }
    body, headers = encode_request(arrays)
    request = server_oip.decode_request(body, int(headers["Inference-Header-Content-Length"]))
    echoed = {t.name: t.array for t in request.inputs}
    answer, answer_headers = server_oip.encode_response(
        model_name="m",
        model_version="7",
        request_id=None,
        outputs=echoed,
        requested=None,
        binary_default=True,
    )
    decoded = decode_response(answer, int(answer_headers["Inference-Header-Content-Length"]))
    assert decoded.model_version == "7"
    for name, array in arrays.items():
        got = decoded.outputs[name]
        if name == "s":
            assert got.tolist() == [b"h\xc3\xa9llo", b""]
        else:
            assert got.dtype == array.dtype
            np.testing.assert_array_equal(got, array)


def test_json_outputs_in_an_inference_answer_are_decoded_too() -> None:
    document = {
        "model_name": "m",
        "outputs": [
            {"name": "y", "datatype": "INT64", "shape": [2, 2], "data": [1, 2, 3, 4]},
            {"name": "s", "datatype": "BYTES", "shape": [1], "data": ["ok"]},
        ],
    }
    decoded = decode_response(json.dumps(document).encode(), None)
    assert decoded.model_version is None
    np.testing.assert_array_equal(decoded.outputs["y"], [[1, 2], [3, 4]])
    assert decoded.outputs["y"].dtype == np.int64
    assert decoded.outputs["s"].tolist() == [b"ok"]


@pytest.mark.parametrize(
    ("header", "binary", "message"),
    [
        (b"not json", None, "does not parse"),
        (b'{"outputs": 3}', None, 'no "outputs" list'),
        (b'{"outputs": [{"name": "y"}]}', None, "lacks a name"),
        (b'{"outputs": [{"name":"y","datatype":"FP32","shape":[3],"data":[1]}]}', None, "1 values"),
        (
            b'{"outputs":[{"name":"y","datatype":"FP32","shape":[2],'
            b'"parameters":{"binary_data_size":8}}]}',
            bytes(4),
            "declares 8 bytes",
        ),
        (
            b'{"outputs":[{"name":"y","datatype":"FP32","shape":[2],'
            b'"parameters":{"binary_data_size":4}}]}',
            bytes(4),
            "4 bytes for shape",
        ),
        (b'{"outputs": []}', b"xx", "2 bytes follow"),
    ],
)
def test_a_malformed_inference_answer_is_a_clear_error(
    header: bytes, binary: bytes | None, message: str
) -> None:
    body, length = (header, None) if binary is None else (header + binary, len(header))
    with pytest.raises(ModelyardError, match=message):
        decode_response(body, length)


# -- errors --------------------------------------------------------------------------------


def test_a_full_queue_is_a_rate_limit_error_with_retry_after(connect: Any) -> None:
    problem = {"title": "Too many requests", "status": 429, "detail": "queue full"}
    client, _ = connect(reply(429, problem, headers={"Retry-After": "2"}))
    deployment = handle(client)
    for binary in (False, True):
        with pytest.raises(RateLimitError) as info:
            deployment.predict(np.zeros((1, 4), np.float32), binary=binary)
        assert (info.value.retry_after, info.value.detail) == (2.0, "queue full")


def test_inference_protocol_errors_keep_their_message(connect: Any) -> None:
    message = "input 'x': shape [1, 5] does not fit [-1, 4] in dimension 1"
    client, _ = connect(reply(422, {"error": message}))
    with pytest.raises(ValidationError) as info:
        handle(client).predict(np.zeros((1, 5), np.float32), binary=True)
    assert info.value.detail == message


@pytest.mark.parametrize(("status", "cls"), [(404, NotFoundError), (504, ServerError)])
def test_predict_errors_map_to_the_exception_tree(connect: Any, status: int, cls: type) -> None:
    client, _ = connect(reply(status, {"title": "x", "detail": "why"}))
    with pytest.raises(cls, match="why"):
        handle(client).predict([[1.0, 2.0, 3.0, 4.0]])


def test_an_answer_without_outputs_is_an_error(connect: Any) -> None:
    client, _ = connect(reply(200, {"deployment": "mlp"}))
    with pytest.raises(ModelyardError, match="no 'outputs'"):
        handle(client).predict([[1.0, 2.0, 3.0, 4.0]])
