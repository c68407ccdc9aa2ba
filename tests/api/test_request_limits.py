"""No work before authentication, and every body capped while it streams.

Each test talks to a real ``modelyard serve`` process over a raw socket (so the client
neither buffers the body nor stops at the first error) and samples the server's resident
memory while the body is sent.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import MLP, deploy, push_catalog
from tests.support.process import ServerProcess, server_process
from tests.support.server import ADMIN_KEY

MiB = 1024 * 1024
CHUNK = b"[" * MiB  # not JSON: whatever the server reads of it, it cannot parse it


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def read_reply(sock: socket.socket) -> bytes:
    """One whole HTTP response (head and a Content-Length body) from ``sock``."""
    reply = b""
    with contextlib.suppress(ConnectionResetError):
        while True:
            head, sep, rest = reply.partition(b"\r\n\r\n")
            if sep:
                lengths = [
                    int(line.split(b":", 1)[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                ]
                if len(rest) >= (lengths[0] if lengths else 0):
                    return reply
            data = sock.recv(65536)
            if not data:
                return reply
            reply += data


@dataclass
class Sent:
    status: int
    body: bytes
    bytes_sent: int
    rss_growth: int


@contextlib.contextmanager
def rss_peak(pid: int) -> Iterator[list[int]]:
    """Samples the process's RSS every 10 ms; yields [baseline, peak]."""
    sample = [rss_bytes(pid), 0]
    sample[1] = sample[0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            with contextlib.suppress(FileNotFoundError):
                sample[1] = max(sample[1], rss_bytes(pid))
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield sample
    finally:
        done.set()
        thread.join()


def send_body(
    server: ServerProcess,
    path: str,
    total: int,
    *,
    key: str | None,
    chunked: bool = False,
    content_type: str = "application/json",
) -> Sent:
    """POST ``total`` bytes to ``path``; stop sending once the server has answered."""
    host, port = server.url.removeprefix("http://").split(":")
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Type: {content_type}"]
    if key is not None:
        head.append(f"Authorization: Bearer {key}")
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    sent = 0
    pid = server.process.pid
    with rss_peak(pid) as sample, socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        deadline = time.monotonic() + 120
        while sent < total and time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            piece = CHUNK[: min(len(CHUNK), total - sent)]
            frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        if chunked and sent >= total:
            with contextlib.suppress(OSError):
                sock.sendall(b"0\r\n\r\n")
        sock.settimeout(60)
        reply = read_reply(sock)
    status = int(reply.split(b" ", 2)[1]) if reply else 0
    return Sent(status, reply.partition(b"\r\n\r\n")[2], sent, sample[1] - sample[0])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("limits")
    # The inference cap is lowered so that what it admits stays far below the memory bound.
    with server_process(
        root / "data", root / "server.log", MODELYARD_MAX_INFER_BYTES=str(8 * MiB)
    ) as srv:
        auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=srv.url, headers=auth, timeout=120) as api:
            push_catalog(api, "m-model", MLP, root)
            deploy(api, "m", model="m-model")
        yield srv


GiB = 1024 * MiB


@pytest.mark.parametrize(
    "path", ["/api/v1/jobs", "/api/v1/principals", "/v1/chat/completions", "/v2/models/m/infer"]
)
def test_a_huge_body_without_a_key_is_refused_before_it_is_read(
    server: ServerProcess, path: str
) -> None:
    sent = send_body(server, path, 3 * GiB // 2, key=None)
    assert sent.status == 401, sent.body
    assert sent.rss_growth < 50 * MiB, sent
    assert sent.bytes_sent < 3 * GiB // 2  # the server answered long before the end


def test_a_chunked_body_of_invalid_json_without_a_key_is_401_not_422(server: ServerProcess) -> None:
    sent = send_body(server, "/api/v1/jobs", 300 * MiB, key=None, chunked=True)
    assert sent.status == 401, sent.body
    assert sent.rss_growth < 50 * MiB, sent


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(
    ("path", "setting"),
    [
        ("/api/v1/jobs", "MODELYARD_MAX_JSON_BYTES"),
        ("/api/v1/principals", "MODELYARD_MAX_JSON_BYTES"),
        ("/v1/chat/completions", "MODELYARD_MAX_JSON_BYTES"),
        ("/v2/models/m/infer", "MODELYARD_MAX_INFER_BYTES"),
    ],
)
def test_an_oversized_body_with_a_key_is_cut_off_at_the_cap(
    server: ServerProcess, path: str, setting: str, chunked: bool
) -> None:
    sent = send_body(server, path, 200 * MiB, key=ADMIN_KEY, chunked=chunked)
    assert sent.status == 413, sent.body
    assert setting.encode() in sent.body
    assert sent.rss_growth < 50 * MiB, sent
    if not chunked:  # the declared length alone is enough to refuse it
        assert sent.bytes_sent < 200 * MiB


def test_uploads_are_capped_while_they_stream(tmp_path: Path) -> None:
    with server_process(
        tmp_path / "data", tmp_path / "server.log", MODELYARD_MAX_UPLOAD_BYTES=str(8 * MiB)
    ) as srv:
        for path, chunked, content_type in [
            ("/api/v1/datasets?name=big&filename=x.csv", True, "text/csv"),
            ("/api/v1/datasets?name=big", False, "multipart/form-data; boundary=b"),
            ("/v1/files", False, "multipart/form-data; boundary=b"),
        ]:
            sent = send_body(
                srv, path, 64 * MiB, key=ADMIN_KEY, chunked=chunked, content_type=content_type
            )
            assert sent.status == 413, (path, sent.body)
            assert b"MODELYARD_MAX_UPLOAD_BYTES" in sent.body
            assert sent.rss_growth < 50 * MiB, sent
        leftovers = [p for p in (tmp_path / "data" / "tmp").rglob("*") if p.is_file()]
        assert leftovers == []


def test_a_content_length_that_is_not_ascii_digits_is_a_400(server: ServerProcess) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            (
                f"POST /api/v1/jobs HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Length: 1e3\r\n\r\n"
            ).encode()
        )
        reply = read_reply(sock)
    assert reply.split(b" ", 2)[1] in (b"400", b"422"), reply


@pytest.mark.parametrize("value", ["¹", "٣", "-1", "1e3"])
def test_an_inference_header_length_that_is_not_ascii_digits_is_a_422(
    server: ServerProcess, value: str
) -> None:
    body = b'{"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": []}]}'
    host, port = server.url.removeprefix("http://").split(":")
    head = (
        (
            f"POST /v2/models/m/infer HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Length: {len(body)}\r\n"
        ).encode()
        + b"Inference-Header-Content-Length: "
        + value.encode()
        + b"\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + body)
        reply = read_reply(sock)
    assert reply.split(b" ", 2)[1] == b"422", reply
    assert b"Inference-Header-Content-Length" in reply
