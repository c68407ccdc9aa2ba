"""Unit tests of the SDK's jobs against httpx.MockTransport: requests, the event stream
(parsing, reconnecting), waiting, progress and ``fit``."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest

from modelyard.client import (
    Client,
    Job,
    JobEvent,
    JobFailedError,
    JobTimeoutError,
    ModelyardError,
    NotFoundError,
    TransportError,
    ValidationError,
)
from modelyard.client._sse import ServerSentEvent, iter_sse

BASE = "http://modelyard.test"
WHEN = "2024-05-01T12:00:00+00:00"
JOB_ID = "j" * 32
JOB_PATH = f"/api/v1/jobs/{JOB_ID}"
EVENTS_PATH = f"{JOB_PATH}/events"
OWNER = {"id": "p" * 32, "name": "alice"}
RESULT = {
    "model": "digits-mlp",
    "version": 3,
    "metrics": {"train": {"loss": 0.1}, "val": {"loss": 0.2, "accuracy": 0.97}},
}

Route = Callable[[httpx.Request], httpx.Response]


def job_json(status: str = "queued", **extra: Any) -> dict[str, Any]:
    return {
        "id": JOB_ID,
        "type": "train",
        "status": status,
        "owner": OWNER,
        "spec": {"output_model": "digits-mlp", "dataset": "digits", "config": {"epochs": 2}},
        "progress": 1.0 if status == "succeeded" else 0.0,
        "eta_s": None,
        "metrics": {},
        "result": RESULT if status == "succeeded" else None,
        "error": "boom: out of cheese" if status == "failed" else None,
        "attempt": 1,
        "created_at": WHEN,
        "started_at": WHEN,
        "finished_at": None,
        **extra,
    }


def frame(seq: int, kind: str, **data: Any) -> str:
    payload = json.dumps({"seq": seq, "at": WHEN, **data})
    return f"id: {seq}\nevent: {kind}\ndata: {payload}\n\n"


END = "event: end\ndata: {}\n\n"
# A whole short training run, as the server streams it.
RUN = [
    frame(1, "status", status="queued"),
    frame(2, "status", status="running", attempt=1),
    frame(3, "step", epoch=1, step=10, loss=0.9, lr=0.001, samples_per_s=1000.0),
    frame(
        4,
        "epoch",
        epoch=1,
        epochs=2,
        train={"loss": 0.8},
        val={"accuracy": 0.9},
        progress=0.5,
        eta_s=3.0,
    ),
    frame(5, "step", epoch=2, step=20, loss=0.3, lr=0.001, samples_per_s=1000.0),
    frame(
        6,
        "epoch",
        epoch=2,
        epochs=2,
        train={"loss": 0.2},
        val={"accuracy": 0.97},
        progress=1.0,
        eta_s=0.0,
    ),
    frame(7, "status", status="succeeded"),
]


def sse(*chunks: str | Exception) -> Route:
    """An event-stream answer sending ``chunks``; an exception in them cuts the connection."""

    def route(request: httpx.Request) -> httpx.Response:
        def body() -> Iterator[bytes]:
            for chunk in chunks:
                if isinstance(chunk, Exception):
                    raise httpx.RemoteProtocolError(str(chunk), request=request)
                yield chunk.encode()

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    return route


def answer(status: int = 200, body: Any = None) -> Route:
    return lambda _r: httpx.Response(status, json=body)


@dataclass
class Server:
    """Answers each (method, path) with its routes in turn (the last one repeats)."""

    routes: dict[tuple[str, str], list[Route]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def on(self, method: str, path: str, *routes: Route) -> None:
        self.routes[method, path] = list(routes)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        queue = self.routes.get((request.method, request.url.path))
        if not queue:
            return httpx.Response(404, json={"title": "Not found", "detail": "no route"})
        route = queue.pop(0) if len(queue) > 1 else queue[0]
        return route(request)

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if (r.method, r.url.path) == (method, path)]


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with Client(BASE, "my_key", transport=httpx.MockTransport(server)) as c:
        yield c


# -- requests ----------------------------------------------------------------------------


def test_create_posts_the_spec_with_keywords_merged_in(server: Server, client: Client) -> None:
    server.on("POST", "/api/v1/jobs", answer(201, job_json()))
    job = client.jobs.create({"type": "train", "dataset": "digits", "epochs": 9}, epochs=3)
    assert json.loads(server.requests[-1].content) == {
        "type": "train",
        "dataset": "digits",
        "epochs": 3,
    }
    assert isinstance(job, Job)
    assert (job.id, job.type, job.status, job.attempt) == (JOB_ID, "train", "queued", 1)
    assert job.owner is not None and job.owner.name == "alice"
    assert job.result == {} and not job.done
    assert repr(job) == f"Job(id='{JOB_ID}', type='train', status='queued')"


def test_create_sends_the_flat_form_as_given(server: Server, client: Client) -> None:
    server.on("POST", "/api/v1/jobs", answer(201, job_json()))
    flat = {"model_name": "mlp", "data": "digits", "optimizer": "adam", "learning_rate": 1e-3}
    client.jobs.create(**flat)
    assert json.loads(server.requests[-1].content) == flat


def test_create_needs_a_spec(server: Server, client: Client) -> None:
    with pytest.raises(ValueError, match="job spec"):
        client.jobs.create()
    assert server.requests == []


def test_a_refused_spec_is_a_validation_error(server: Server, client: Client) -> None:
    problem = {"title": "Invalid input", "status": 422, "detail": "optimizer.name: unknown"}
    server.on("POST", "/api/v1/jobs", answer(422, problem))
    with pytest.raises(ValidationError, match=r"optimizer\.name"):
        client.jobs.create({"type": "train"})


def test_get_list_cancel_and_logs(server: Server, client: Client) -> None:
    server.on("GET", JOB_PATH, answer(200, job_json("running")))
    server.on("GET", "/api/v1/jobs", answer(200, {"items": [job_json("failed")], "total": 1}))
    server.on("POST", f"{JOB_PATH}/cancel", answer(200, job_json("cancelled")))
    server.on("GET", f"{JOB_PATH}/logs", lambda _r: httpx.Response(200, text="line 1\nline 2\n"))

    assert client.jobs.get(JOB_ID).status == "running"
    [failed] = client.jobs.list(status="failed")
    assert server.requests[-1].url.params["status"] == "failed"
    assert failed.error == "boom: out of cheese" and failed.done
    client.jobs.list()
    assert "status" not in server.requests[-1].url.params
    assert client.jobs.cancel(JOB_ID).status == "cancelled"
    assert client.jobs.logs(JOB_ID) == "line 1\nline 2\n"


def test_handle_methods_act_on_their_job(server: Server, client: Client) -> None:
    server.on("POST", "/api/v1/jobs", answer(201, job_json()))
    server.on("GET", JOB_PATH, answer(200, job_json("running", progress=0.5, eta_s=4.0)))
    server.on("POST", f"{JOB_PATH}/cancel", answer(200, job_json("cancelled")))
    job = client.jobs.create({"type": "train"})
    assert job.refresh() is job
    assert (job.status, job.progress, job.eta_s) == ("running", 0.5, 4.0)
    job.cancel()
    assert job.status == "cancelled"
    assert job.done


def test_events_pages_by_sequence_number(server: Server, client: Client) -> None:
    def events(request: httpx.Request) -> httpx.Response:
        after = int(request.url.params["after"])
        limit = int(request.url.params["limit"])
        seqs = range(after + 1, min(after + limit, 1200) + 1)
        items = [{"seq": s, "at": WHEN, "type": "log", "data": {"message": f"m{s}"}} for s in seqs]
        # The server's "total" counts the page, so only the page length can end the walk.
        return httpx.Response(200, json={"items": items, "total": len(items)})

    server.on("GET", EVENTS_PATH, events)
    found = client.jobs.events(JOB_ID, after=100)
    assert [e.seq for e in found] == list(range(101, 1201))
    assert [int(r.url.params["after"]) for r in server.requests] == [100, 600, 1100]
    assert found[0] == JobEvent(seq=101, at=found[0].at, type="log", data={"message": "m101"})
    assert found[0].at is not None and found[0].at.year == 2024


# -- the live stream ---------------------------------------------------------------------


def test_stream_yields_events_in_order_and_ends_with_the_stream(
    server: Server, client: Client
) -> None:
    server.on("GET", EVENTS_PATH, sse("retry: 0\n\n", ": keep-alive\n\n", *RUN, END))
    events = list(client.jobs.stream(JOB_ID))
    assert [e.seq for e in events] == list(range(1, 8))
    assert [e.type for e in events][:3] == ["status", "status", "step"]
    assert events[2].data == {
        "epoch": 1,
        "step": 10,
        "loss": 0.9,
        "lr": 0.001,
        "samples_per_s": 1000.0,
    }
    assert events[-1].ends_job and not events[0].ends_job
    [request] = server.requests
    assert request.headers["accept"] == "text/event-stream"
    assert "last-event-id" not in request.headers


def test_stream_after_a_known_event_sends_last_event_id(server: Server, client: Client) -> None:
    server.on("GET", EVENTS_PATH, sse(*RUN[5:], END))
    assert [e.seq for e in client.jobs.stream(JOB_ID, last_event_id=5)] == [6, 7]
    assert server.requests[0].headers["last-event-id"] == "5"


def test_a_dropped_stream_resumes_without_losing_or_repeating_events(
    server: Server, client: Client
) -> None:
    half = RUN[3][: len(RUN[3]) // 2]  # event 4 cut in the middle of its data line
    server.on(
        "GET",
        EVENTS_PATH,
        sse("retry: 0\n\n", *RUN[:3], half, ConnectionResetError("peer closed")),
        # A server may replay an event the client already has; it must not appear twice.
        sse(RUN[2], *RUN[3:], END),
    )
    events = list(client.jobs.stream(JOB_ID))
    assert [e.seq for e in events] == list(range(1, 8))
    first, second = server.requests
    assert "last-event-id" not in first.headers
    assert second.headers["last-event-id"] == "3"


def test_a_stream_closed_without_its_end_ends_if_the_job_did(
    server: Server, client: Client
) -> None:
    server.on("GET", EVENTS_PATH, sse("retry: 0\n\n", *RUN[:2]), sse(*RUN[2:]))
    server.on("GET", JOB_PATH, answer(200, job_json("running")), answer(200, job_json("succeeded")))
    assert [e.seq for e in client.jobs.stream(JOB_ID)] == list(range(1, 8))
    assert len(server.sent("GET", EVENTS_PATH)) == 2
    assert server.sent("GET", EVENTS_PATH)[1].headers["last-event-id"] == "2"


def test_a_server_that_cannot_be_reached_at_all_raises_at_once(
    server: Server, client: Client
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    server.on("GET", EVENTS_PATH, refuse)
    with pytest.raises(TransportError, match="connection refused"):
        list(client.jobs.stream(JOB_ID))
    assert len(server.requests) == 1


def test_stream_errors_map_to_sdk_errors(server: Server, client: Client) -> None:
    server.on("GET", EVENTS_PATH, answer(404, {"title": "Not found", "detail": "no job"}))
    with pytest.raises(NotFoundError, match="no job"):
        list(client.jobs.stream(JOB_ID))
    server.on("GET", EVENTS_PATH, answer(200, {"items": [], "total": 0}))
    with pytest.raises(ModelyardError, match="not an event stream"):
        list(client.jobs.stream(JOB_ID))


def test_a_whole_event_object_as_stream_data_is_understood() -> None:
    nested = {"seq": 4, "at": WHEN, "type": "log", "data": {"message": "hi"}}
    event = JobEvent.from_stream(4, "log", nested)
    assert (event.seq, event.type, event.data) == (4, "log", {"message": "hi"})
    flat = JobEvent.from_stream(5, "log", {"seq": 5, "at": WHEN, "message": "hi"})
    assert (flat.seq, flat.data, flat.raw["type"]) == (5, {"message": "hi"}, "log")


def test_sse_parser_follows_the_standard() -> None:
    lines = [
        ": a comment",
        "retry: 250",
        "",
        "id: 1",
        "event: log",
        "data: first",
        "data:second",
        "unknown: ignored",
        "",
        "data",
        "",
        "id: bad\0id",
        "data: x",
        "",
        "data: never terminated",
    ]
    assert list(iter_sse(lines)) == [
        ServerSentEvent(retry=250),
        ServerSentEvent(event="log", data="first\nsecond", id="1"),
        ServerSentEvent(data=""),
        ServerSentEvent(data="x"),
    ]


# -- waiting -----------------------------------------------------------------------------


def test_wait_follows_the_stream_and_returns_the_finished_job(
    server: Server, client: Client
) -> None:
    server.on("POST", "/api/v1/jobs", answer(201, job_json()))
    server.on("GET", JOB_PATH, answer(200, job_json("running")), answer(200, job_json("succeeded")))
    server.on("GET", EVENTS_PATH, sse(*RUN, END))
    job = client.jobs.create({"type": "train"})
    assert job.wait() is job
    assert job.status == "succeeded"
    assert job.result == RESULT
    assert [(r.method, r.url.path) for r in server.requests] == [
        ("POST", "/api/v1/jobs"),
        ("GET", JOB_PATH),
        ("GET", EVENTS_PATH),
        ("GET", JOB_PATH),
    ]


def test_wait_on_a_finished_job_opens_no_stream(server: Server, client: Client) -> None:
    server.on("GET", JOB_PATH, answer(200, job_json("succeeded")))
    client.jobs.get(JOB_ID).wait()
    assert server.sent("GET", EVENTS_PATH) == []


@pytest.mark.parametrize(
    ("status", "error"), [("failed", "boom: out of cheese"), ("cancelled", None)]
)
def test_wait_raises_when_the_job_does_not_succeed(
    server: Server, client: Client, status: str, error: str | None
) -> None:
    running = answer(200, job_json("running"))
    server.on("GET", JOB_PATH, running, running, answer(200, job_json(status)))
    server.on("GET", EVENTS_PATH, sse(*RUN[:3], frame(4, "status", status=status), END))
    with pytest.raises(JobFailedError) as info:
        client.jobs.get(JOB_ID).wait()
    assert len(server.sent("GET", EVENTS_PATH)) == 1
    exc = info.value
    assert (exc.job_status, exc.error, exc.job.status) == (status, error, status)
    assert exc.title == f"Job {status}"
    assert exc.detail == (error or "")
    assert exc.body["id"] == JOB_ID
    assert str(exc) == f"job {JOB_ID} {status}" + (f": {error}" if error else "")


def test_wait_gives_up_after_its_timeout(server: Server, client: Client) -> None:
    server.on("GET", JOB_PATH, answer(200, job_json("running")))
    with pytest.raises(JobTimeoutError) as info:
        client.jobs.get(JOB_ID).wait(timeout=0)
    assert isinstance(info.value, TimeoutError)
    assert info.value.job.status == "running"
    assert "still running" in str(info.value)


def test_wait_with_progress_draws_epoch_loss_and_metric(
    server: Server, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    running = answer(200, job_json("running"))
    server.on("GET", JOB_PATH, running, running, answer(200, job_json("succeeded")))
    server.on("GET", EVENTS_PATH, sse(*RUN, END))
    client.jobs.get(JOB_ID).wait(progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "digits-mlp" in captured.err
    assert "epoch 2/2" in captured.err
    assert "loss 0.3" in captured.err
    assert "val_acc 0.97" in captured.err
    assert "succeeded" in captured.err


# -- fit ---------------------------------------------------------------------------------


def test_fit_uploads_the_arrays_submits_a_train_job_and_waits(
    server: Server, client: Client
) -> None:
    dataset = {
        "id": "d" * 32,
        "name": "x",
        "format": "npz",
        "kind": "arrays",
        "schema": {},
        "num_rows": 4,
        "label": "y",
        "sha256": "0" * 64,
        "size": 1,
        "owner": OWNER,
        "created_at": WHEN,
        "public": False,
    }
    server.on("POST", "/api/v1/datasets", answer(201, dataset))
    server.on("POST", "/api/v1/jobs", answer(201, job_json()))
    server.on("GET", JOB_PATH, answer(200, job_json("running")), answer(200, job_json("succeeded")))
    server.on("GET", EVENTS_PATH, sse(*RUN, END))
    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    job = client.fit(
        {"arch": "mlp", "hidden": [8]},
        x,
        [0, 1, 1, 0],
        epochs=4,
        validation_split=0.25,
        lr=0.01,
        output_model="xor",
        seed=7,
        schedule={"name": "cosine"},
    )
    assert job.status == "succeeded" and job.result["version"] == 3

    [upload] = server.sent("POST", "/api/v1/datasets")
    name = upload.url.params["name"]
    assert re.fullmatch(r"fit-mlp-\d{8}-\d{6}-[0-9a-f]{4}", name)
    assert (upload.url.params["format"], upload.url.params["label"]) == ("npz", "y")
    with np.load(io.BytesIO(upload.content)) as npz:
        np.testing.assert_array_equal(npz["x"], x)
        np.testing.assert_array_equal(npz["y"], [0, 1, 1, 0])
    [submit] = server.sent("POST", "/api/v1/jobs")
    assert json.loads(submit.content) == {
        "type": "train",
        "model": {"spec": {"arch": "mlp", "hidden": [8]}},
        "dataset": name,
        "label": "y",
        "epochs": 4,
        "batch_size": 32,
        "optimizer": {"name": "adam", "lr": 0.01},
        "validation": {"fraction": 0.25},
        "output_model": "xor",
        "seed": 7,
        "schedule": {"name": "cosine"},
    }


def test_fit_with_validation_data_pushes_a_second_data_set(server: Server, client: Client) -> None:
    server.on("POST", "/api/v1/datasets", answer(400, {"title": "stop here"}))
    with pytest.raises(ValueError, match="not both"):
        client.fit("mlp", [[0.0]], [0], validation_split=0.2, validation_data=([[1.0]], [1]))
    assert server.requests == []

    pushed: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        pushed.append(request.url.params["name"])
        return httpx.Response(201, json={"id": "d" * 32, "name": pushed[-1], "created_at": WHEN})

    server.on("POST", "/api/v1/datasets", record)
    server.on("POST", "/api/v1/jobs", answer(201, job_json("succeeded")))
    server.on("GET", JOB_PATH, answer(200, job_json("succeeded")))
    client.fit(
        "cnn",
        [[0.0]],
        [0],
        validation_data=([[1.0]], [1]),
        dataset_name="tiny",
        optimizer={"name": "sgd", "momentum": 0.9},
    )
    assert pushed == ["tiny", "tiny-val"]
    body = json.loads(server.sent("POST", "/api/v1/jobs")[0].content)
    assert body["model"] == {"spec": {"arch": "cnn"}}
    assert body["validation_dataset"] == "tiny-val"
    assert "validation" not in body
    assert body["optimizer"] == {"lr": 0.001, "name": "sgd", "momentum": 0.9}
