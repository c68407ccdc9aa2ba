"""Unit tests of the SDK against httpx.MockTransport: request shapes, errors, streaming."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from starlette.datastructures import UploadFile
from starlette.requests import Request as StarletteRequest

import modelyard.client
from modelyard.client import (
    APIError,
    AuthenticationError,
    Client,
    ConflictError,
    Grant,
    ModelyardError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from modelyard.client._transfer import CHUNK_SIZE

BASE = "http://modelyard.test"
KEY = "my_secret-key"
WHEN = "2024-05-01T12:00:00+00:00"
OWNER = {"id": "p" * 32, "name": "alice"}

Handler = Callable[[httpx.Request], httpx.Response]


def principal_json(name: str = "alice", **extra: Any) -> dict[str, Any]:
    return {
        "id": "p" * 32,
        "name": name,
        "kind": "user",
        "is_admin": False,
        "created_at": WHEN,
        **extra,
    }


def key_json(name: str = "laptop", **extra: Any) -> dict[str, Any]:
    return {
        "id": "k" * 32,
        "name": name,
        "prefix": "my_abcd",
        "scopes": ["read"],
        "principal": OWNER,
        "expires_at": None,
        "revoked_at": None,
        "last_used_at": None,
        "created_at": WHEN,
        **extra,
    }


def dataset_json(name: str = "digits", **extra: Any) -> dict[str, Any]:
    return {
        "id": "d" * 32,
        "name": name,
        "description": "",
        "format": "csv",
        "kind": "table",
        "schema": {"columns": [{"name": "x", "dtype": "float64"}]},
        "num_rows": 3,
        "label": "x",
        "sha256": "0" * 64,
        "size": 10,
        "owner": OWNER,
        "created_at": WHEN,
        "public": False,
        **extra,
    }


def model_json(name: str = "mlp", **extra: Any) -> dict[str, Any]:
    return {
        "id": "m" * 32,
        "name": name,
        "task": "classification",
        "description": "",
        "owner": OWNER,
        "created_at": WHEN,
        "latest_version": 2,
        "aliases": {"production": 1},
        "public": False,
        **extra,
    }


def version_json(version: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "id": "v" * 32,
        "model": "mlp",
        "version": version,
        "format": "safetensors",
        "sha256": "0" * 64,
        "size": 10,
        "spec": {"arch": "mlp"},
        "signature": None,
        "metrics": {"accuracy": 0.9},
        "params": {},
        "description": "",
        "lineage": {"dataset": None, "job": None, "parent_version": None},
        "created_by": OWNER,
        "created_at": WHEN,
        **extra,
    }


class Recorder:
    """A MockTransport handler that records each request (body read) and answers it."""

    def __init__(self, answer: Handler) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def reply(status: int = 200, body: Any = None, **kwargs: Any) -> Handler:
    return lambda _request: httpx.Response(status, json=body, **kwargs)


@pytest.fixture
def connect() -> Iterator[Callable[[Handler], tuple[Client, Recorder]]]:
    clients: list[Client] = []

    def make(answer: Handler) -> tuple[Client, Recorder]:
        recorder = Recorder(answer)
        client = Client(BASE, KEY, transport=httpx.MockTransport(recorder))
        clients.append(client)
        return client, recorder

    yield make
    for client in clients:
        client.close()


# -- the package surface -----------------------------------------------------------------


def test_all_lists_exactly_the_public_names_and_each_imports() -> None:
    public = {n for n in vars(modelyard.client) if not n.startswith("_")}
    assert set(modelyard.client.__all__) == public
    assert len(modelyard.client.__all__) == len(set(modelyard.client.__all__))
    namespace: dict[str, Any] = {}
    exec("from modelyard.client import *", namespace)
    assert set(modelyard.client.__all__) <= set(namespace)
    assert modelyard.Client is modelyard.client.Client


def test_importing_the_sdk_pulls_in_no_server_or_ml_stack() -> None:
    code = (
        "import sys, modelyard, modelyard.client\n"
        "heavy = {'torch', 'fastapi', 'sqlalchemy', 'numpy', 'pydantic', 'typer'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_exception_tree() -> None:
    for cls in (
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        ConflictError,
        PayloadTooLargeError,
        UnsupportedMediaTypeError,
        ValidationError,
        RateLimitError,
        ServerError,
    ):
        assert issubclass(cls, APIError)
    assert issubclass(APIError, ModelyardError)
    assert issubclass(TransportError, ModelyardError)
    assert not issubclass(TransportError, APIError)


# -- requests and answers ----------------------------------------------------------------


def test_every_request_carries_the_key_and_whoami_parses(connect: Any) -> None:
    client, rec = connect(reply(body={"principal": principal_json(), "key": key_json()}))
    me = client.whoami()
    assert rec.last.method == "GET"
    assert rec.last.url == f"{BASE}/api/v1/whoami"
    assert rec.last.headers["authorization"] == f"Bearer {KEY}"
    assert rec.last.headers["user-agent"].startswith("modelyard-python")
    assert me.principal.name == "alice"
    assert me.key.principal is not None
    assert me.key.principal.name == "alice"
    assert me.key.created_at == datetime(2024, 5, 1, 12, tzinfo=UTC)


def test_no_authorization_header_without_a_key() -> None:
    rec = Recorder(reply(body={"principal": principal_json(), "key": key_json()}))
    with Client(BASE, transport=httpx.MockTransport(rec)) as client:
        client.whoami()
    assert "authorization" not in rec.last.headers


def test_unknown_fields_are_kept_in_raw(connect: Any) -> None:
    client, _ = connect(reply(201, principal_json("bob", team="ml")))
    created = client.principals.create("bob")
    assert created.raw["team"] == "ml"
    assert created.name == "bob"


def test_principals_create_sends_the_documented_body(connect: Any) -> None:
    client, rec = connect(reply(201, principal_json("ci", kind="service", is_admin=True)))
    principal = client.principals.create("ci", kind="service", is_admin=True)
    assert (rec.last.method, rec.last.url.path) == ("POST", "/api/v1/principals")
    assert json.loads(rec.last.content) == {"name": "ci", "kind": "service", "is_admin": True}
    assert principal.kind == "service"
    assert principal.is_admin


def test_lists_walk_every_page(connect: Any) -> None:
    names = [f"p{i}" for i in range(5)]

    def pages(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        # A server may answer fewer items than asked for; the client must keep going.
        items = [principal_json(n) for n in names[offset : offset + 2]]
        return httpx.Response(200, json={"items": items, "total": len(names)})

    client, rec = connect(pages)
    assert [p.name for p in client.principals.list()] == names
    assert [int(r.url.params["offset"]) for r in rec.requests] == [0, 2, 4]
    assert all(r.url.params["limit"] == "100" for r in rec.requests)


def test_a_list_stops_on_an_empty_page_even_if_total_is_stale(connect: Any) -> None:
    client, rec = connect(reply(body={"items": [], "total": 7}))
    assert client.keys.list() == []
    assert len(rec.requests) == 1


def test_keys_create_sends_scopes_expiry_and_principal(connect: Any) -> None:
    client, rec = connect(reply(201, {**key_json("ci"), "key": "my_the-secret"}))
    created = client.keys.create(
        "ci", ["read", "write"], expires_at=datetime(2030, 1, 2, 3, 4), principal="bot"
    )
    assert (rec.last.method, rec.last.url.path) == ("POST", "/api/v1/keys")
    assert json.loads(rec.last.content) == {
        "name": "ci",
        "scopes": ["read", "write"],
        "expires_at": "2030-01-02T03:04:00+00:00",  # a naive time is taken as UTC
        "principal": "bot",
    }
    assert created.key == "my_the-secret"
    assert "my_the-secret" not in repr(created)


def test_keys_create_takes_a_single_scope_string(connect: Any) -> None:
    client, rec = connect(reply(201, {**key_json(), "key": "my_x"}))
    client.keys.create("k", "read")
    assert json.loads(rec.last.content) == {"name": "k", "scopes": ["read"]}


def test_keys_revoke(connect: Any) -> None:
    client, rec = connect(lambda _r: httpx.Response(204))
    assert client.keys.revoke("abc") is None
    assert (rec.last.method, rec.last.url.path) == ("DELETE", "/api/v1/keys/abc")


def test_names_are_percent_encoded_into_one_path_segment(connect: Any) -> None:
    client, rec = connect(reply(body=version_json()))
    client.models.version("a b/../c", "prod?x")
    assert rec.last.url.raw_path == b"/api/v1/models/a%20b%2F..%2Fc/versions/prod%3Fx"


def test_models_create_update_delete(connect: Any) -> None:
    client, rec = connect(reply(201, model_json()))
    model = client.models.create("mlp", task="classification")
    assert json.loads(rec.last.content) == {"name": "mlp", "task": "classification"}
    assert model.aliases == {"production": 1}
    assert model.latest_version == 2
    client.models.update("mlp", description="")
    assert (rec.last.method, rec.last.url.path) == ("PATCH", "/api/v1/models/mlp")
    assert json.loads(rec.last.content) == {"description": ""}


def test_model_versions_aliases_and_acl(connect: Any) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/versions"):
            return httpx.Response(
                200, json={"items": [version_json(1), version_json(2)], "total": 2}
            )
        if path.endswith("/aliases"):
            return httpx.Response(200, json={"production": 2})
        if "/aliases/" in path and request.method == "PUT":
            return httpx.Response(200, json={"alias": "production", "version": 2})
        if path.endswith("/acl"):
            return httpx.Response(
                200, json=json.loads(request.content or b"{}") or {"public": True, "grants": []}
            )
        return httpx.Response(204)

    client, rec = connect(answer)
    versions = client.models.versions("mlp")
    assert [v.version for v in versions] == [1, 2]
    assert versions[0].metrics == {"accuracy": 0.9}
    assert versions[0].lineage.parent_version is None
    assert client.models.aliases("mlp") == {"production": 2}
    alias = client.models.set_alias("mlp", "production", 2)
    assert json.loads(rec.last.content) == {"version": 2}
    assert (alias.alias, alias.version) == ("production", 2)
    client.models.delete_alias("mlp", "production")
    assert (rec.last.method, rec.last.url.path) == (
        "DELETE",
        "/api/v1/models/mlp/aliases/production",
    )
    acl = client.models.set_acl(
        "mlp", grants=[Grant(principal="bob"), {"principal": "eve", "permission": "write"}]
    )
    assert (rec.last.method, rec.last.url.path) == ("PUT", "/api/v1/models/mlp/acl")
    assert json.loads(rec.last.content) == {
        "public": False,
        "grants": [
            {"principal": "bob", "permission": "read"},
            {"principal": "eve", "permission": "write"},
        ],
    }
    assert acl.grants == (Grant(principal="bob"), Grant(principal="eve", permission="write"))
    assert client.models.get_acl("mlp").public is True


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, APIError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (413, PayloadTooLargeError),
        (415, UnsupportedMediaTypeError),
        (422, ValidationError),
        (429, RateLimitError),
        (500, ServerError),
        (503, ServerError),
    ],
)
def test_problem_json_maps_to_the_error_class(connect: Any, status: int, cls: type) -> None:
    problem = {
        "type": "https://modelyard.dev/problems/x",
        "title": "Some title",
        "status": status,
        "detail": "what went wrong",
        "errors": [1],
    }
    client, _ = connect(
        lambda _r: httpx.Response(
            status, json=problem, headers={"content-type": "application/problem+json"}
        )
    )
    with pytest.raises(APIError) as info:
        client.datasets.get("digits")
    error = info.value
    assert type(error) is cls
    assert (error.status, error.title, error.detail) == (status, "Some title", "what went wrong")
    assert error.problem_type == "https://modelyard.dev/problems/x"
    assert error.body == problem
    assert str(error) == f"{status} Some title: what went wrong"


def test_rate_limit_reads_retry_after_in_seconds_and_as_a_date(connect: Any) -> None:
    client, _ = connect(reply(429, {"title": "Too many requests"}, headers={"Retry-After": "3"}))
    with pytest.raises(RateLimitError) as info:
        client.models.list()
    assert info.value.retry_after == 3.0

    later = format_datetime(datetime.now(UTC).replace(microsecond=0).replace(year=2100))
    client, _ = connect(reply(429, {"title": "Slow down"}, headers={"Retry-After": later}))
    with pytest.raises(RateLimitError) as info:
        client.models.list()
    assert info.value.retry_after is not None
    assert info.value.retry_after > 3600


def test_a_non_json_error_body_becomes_the_detail(connect: Any) -> None:
    client, _ = connect(lambda _r: httpx.Response(502, text="upstream down\n"))
    with pytest.raises(ServerError) as info:
        client.whoami()
    assert (info.value.title, info.value.detail, info.value.body) == (
        "Bad Gateway",
        "upstream down",
        "upstream down\n",
    )


def test_fastapi_validation_detail_is_made_readable(connect: Any) -> None:
    detail = [{"loc": ["body", "name"], "msg": "field required", "type": "missing"}]
    client, _ = connect(reply(422, {"detail": detail}))
    with pytest.raises(ValidationError) as info:
        client.models.create("x")
    assert info.value.detail == "body.name: field required"
    assert info.value.title == "Unprocessable Entity"


def test_transport_failures_are_wrapped(connect: Any) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client, _ = connect(refuse)
    with pytest.raises(TransportError, match="connection refused") as info:
        client.whoami()
    assert isinstance(info.value.__cause__, httpx.ConnectError)


def test_a_success_that_is_not_json_is_an_error(connect: Any) -> None:
    client, _ = connect(lambda _r: httpx.Response(200, text="<html>proxy login</html>"))
    with pytest.raises(ModelyardError, match="not JSON"):
        client.datasets.get("digits")


def test_context_manager_closes_the_client() -> None:
    rec = Recorder(reply(body={"principal": principal_json(), "key": key_json()}))
    with Client(BASE, KEY, transport=httpx.MockTransport(rec)) as client:
        client.whoami()
    with pytest.raises(RuntimeError, match="closed"):
        client.whoami()


# -- uploads -----------------------------------------------------------------------------


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "digits.csv"
    path.write_bytes(bytes(range(256)) * (CHUNK_SIZE * 5 // 2 // 256))  # 2.5 chunks
    return path


class StreamRecorder(httpx.BaseTransport):
    """Records the chunks of a request body as the client streams them."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.chunks: list[bytes] = []
        self.request: httpx.Request | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.request = request
        self.chunks = list(request.stream)  # type: ignore[arg-type]
        return httpx.Response(201, json=self.body)


def test_dataset_push_streams_the_file_with_its_length(big_file: Path) -> None:
    transport = StreamRecorder(dataset_json())
    seen: list[tuple[int, int | None]] = []
    with Client(BASE, KEY, transport=transport) as client:
        dataset = client.datasets.push(
            "digits", big_file, label="x", progress=lambda d, t: seen.append((d, t))
        )
    request = transport.request
    assert request is not None
    assert (request.method, request.url.path) == ("POST", "/api/v1/datasets")
    assert dict(request.url.params) == {"name": "digits", "label": "x", "filename": "digits.csv"}
    size = big_file.stat().st_size
    assert request.headers["content-type"] == "application/octet-stream"
    assert request.headers["content-length"] == str(size)
    assert "transfer-encoding" not in request.headers
    assert b"".join(transport.chunks) == big_file.read_bytes()
    assert len(transport.chunks) == 3
    assert max(map(len, transport.chunks)) == CHUNK_SIZE
    assert seen == [(0, size), (CHUNK_SIZE, size), (2 * CHUNK_SIZE, size), (size, size)]
    assert dataset.name == "digits"
    assert dataset.num_rows == 3


def test_dataset_push_of_an_idx_pair_is_multipart(connect: Any, tmp_path: Path) -> None:
    images, labels = tmp_path / "train-images-idx3-ubyte", tmp_path / 'odd"name'
    images.write_bytes(b"\x00\x00\x08\x03" + b"\r\n--x" * 1000)
    labels.write_bytes(b"\x00\x00\x08\x01\xff")
    client, rec = connect(reply(201, dataset_json(format="idx", kind="arrays")))
    client.datasets.push("mnist", [images, labels], label="labels")

    request = rec.last
    assert dict(request.url.params) == {"name": "mnist", "format": "idx", "label": "labels"}
    assert int(request.headers["content-length"]) == len(request.content)
    assert parse_form_as_the_server_does(request) == {
        "images": ("train-images-idx3-ubyte", images.read_bytes()),
        "labels": ("odd%22name", labels.read_bytes()),
    }


def parse_form_as_the_server_does(request: httpx.Request) -> dict[str, tuple[str | None, bytes]]:
    """Parse a multipart body with Starlette, the parser behind the server's routes."""
    body = request.content

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def parse() -> dict[str, tuple[str | None, bytes]]:
        headers = [(k.lower().encode(), v.encode()) for k, v in request.headers.items()]
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/",
            "query_string": b"",
            "headers": headers,
        }
        async with StarletteRequest(scope, receive).form() as form:
            return {
                k: (v.filename, await v.read())
                for k, v in form.multi_items()
                if isinstance(v, UploadFile)
            }

    return asyncio.run(parse())


def test_push_refuses_three_files(connect: Any, tmp_path: Path) -> None:
    client, rec = connect(reply(201, dataset_json()))
    path = tmp_path / "a"
    path.write_bytes(b"1")
    with pytest.raises(ValueError, match="one file, or two"):
        client.datasets.push("x", [path, path, path])
    assert rec.requests == []


def test_push_arrays_uploads_an_npz(connect: Any) -> None:
    client, rec = connect(reply(201, dataset_json(format="npz", kind="arrays")))
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    client.datasets.push_arrays("xor", x=x, y=[0, 1, 1, 0], label="y")
    assert dict(rec.last.url.params) == {
        "name": "xor",
        "format": "npz",
        "label": "y",
        "filename": "xor.npz",
    }
    with np.load(io.BytesIO(rec.last.content), allow_pickle=False) as npz:
        assert sorted(npz.files) == ["x", "y"]
        np.testing.assert_array_equal(npz["x"], x)
        np.testing.assert_array_equal(npz["y"], [0, 1, 1, 0])


def test_model_push_sends_metadata_as_json_query_params(connect: Any, tmp_path: Path) -> None:
    artifact = tmp_path / "model.safetensors"
    artifact.write_bytes(b"weights")
    client, rec = connect(reply(201, version_json(3)))
    version = client.models.push(
        "mlp", artifact, spec={"arch": "mlp", "hidden": [8]}, metrics={"acc": 0.5}, parent=2
    )
    assert (rec.last.method, rec.last.url.path) == ("POST", "/api/v1/models/mlp/versions")
    assert dict(rec.last.url.params) == {
        "filename": "model.safetensors",
        "spec": '{"arch":"mlp","hidden":[8]}',
        "metrics": '{"acc":0.5}',
        "parent": "2",
    }
    assert rec.last.content == b"weights"
    assert version.version == 3


def test_a_file_that_shrinks_mid_upload_fails(connect: Any, big_file: Path) -> None:
    client, _ = connect(reply(201, dataset_json()))

    def truncate(done: int, _total: int | None) -> None:
        if done:
            big_file.write_bytes(b"short")

    with pytest.raises(ModelyardError, match="shrank"):
        client.datasets.push("digits", big_file, progress=truncate)


def test_pushing_a_directory_says_how_to_fix_it(connect: Any, tmp_path: Path) -> None:
    client, rec = connect(reply(201, version_json()))
    with pytest.raises(ValueError, match=r"\.tar"):
        client.models.push("mlp", tmp_path)
    assert rec.requests == []


# -- downloads ---------------------------------------------------------------------------


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_download_writes_a_part_file_then_renames(connect: Any, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    client, rec = connect(
        lambda _r: httpx.Response(
            200,
            content=chunked(data, 300_000),
            headers={
                "Content-Length": str(len(data)),
                "Content-Disposition": 'attachment; filename="digits.csv"',
            },
        )
    )
    dest = tmp_path / "digits.csv"
    part = tmp_path / "digits.csv.part"
    seen: list[tuple[int, int | None, bool, bool]] = []
    path = client.datasets.download(
        "digits", tmp_path, progress=lambda d, t: seen.append((d, t, part.exists(), dest.exists()))
    )
    assert rec.last.url.path == "/api/v1/datasets/digits/download"
    assert path == dest
    assert dest.read_bytes() == data
    assert not part.exists()
    done = [d for d, *_ in seen]
    assert done == sorted(done)
    assert len(set(done)) == len(done)
    assert done[-1] == len(data)
    assert len(done) >= 4
    assert all(t == len(data) for _, t, _, _ in seen)
    # While bytes arrive they go to the .part file; the real name appears only at the end.
    assert all(p and not d for _, _, p, d in seen[1:])


def test_download_to_a_file_path_and_a_hostile_file_name(connect: Any, tmp_path: Path) -> None:
    headers = {"Content-Disposition": 'attachment; filename="../../etc/evil"'}
    client, _ = connect(lambda _r: httpx.Response(200, content=b"abc", headers=headers))
    assert client.datasets.download("d", tmp_path) == tmp_path / "evil"
    target = tmp_path / "named.bin"
    assert client.datasets.download("d", target) == target
    assert target.read_bytes() == b"abc"


def test_a_failed_download_leaves_nothing_behind(connect: Any, tmp_path: Path) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        def body() -> Iterator[bytes]:
            yield b"partial"
            raise httpx.ReadError("connection reset", request=request)

        return httpx.Response(200, content=body())

    client, _ = connect(broken)
    with pytest.raises(TransportError, match="connection reset"):
        client.datasets.download("digits", tmp_path / "out.csv")
    assert list(tmp_path.iterdir()) == []


def test_a_download_error_raises_before_any_file_is_made(connect: Any, tmp_path: Path) -> None:
    client, _ = connect(reply(404, {"title": "Not found", "detail": "no data set 'x'"}))
    with pytest.raises(NotFoundError, match="no data set 'x'"):
        client.datasets.download("x", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_pull_checks_the_announced_sha256(connect: Any, tmp_path: Path) -> None:
    data = b"model bytes"
    good = hashlib.sha256(data).hexdigest()

    def answer(sha: str) -> Handler:
        headers = {
            "Content-Disposition": 'attachment; filename="mlp-v1.safetensors"',
            "X-Modelyard-Sha256": sha,
        }
        return lambda _r: httpx.Response(200, content=data, headers=headers)

    client, rec = connect(answer(good))
    path = client.models.pull("mlp", "production", tmp_path)
    assert rec.last.url.path == "/api/v1/models/mlp/versions/production/download"
    assert path == tmp_path / "mlp-v1.safetensors"
    assert path.read_bytes() == data

    other = tmp_path / "other"
    other.mkdir()
    client, _ = connect(answer("0" * 64))
    with pytest.raises(ModelyardError, match="sha256"):
        client.models.pull("mlp", 1, other)
    assert list(other.iterdir()) == []


def test_pull_without_a_suggested_name_uses_the_model_and_version(
    connect: Any, tmp_path: Path
) -> None:
    client, _ = connect(lambda _r: httpx.Response(200, content=b"x"))
    assert client.models.pull("mlp", 4, tmp_path) == tmp_path / "mlp-v4"
