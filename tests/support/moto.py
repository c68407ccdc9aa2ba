"""A real S3 API for tests: moto's server on 127.0.0.1, in a thread of the test process.

Use it as ``with moto_server() as endpoint_url: ...`` and talk to it with
:func:`s3_client` or any S3 client given :data:`FAKE_CREDENTIALS`. Servers started in one
process share moto's in-memory state, so give every test its own bucket.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
from moto.server import ThreadedMotoServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """Run moto's S3 server on a free port of 127.0.0.1 and yield its endpoint URL."""
    # Port 0 lets the kernel pick a free port at bind time, so parallel runs cannot race.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_client(endpoint_url: str) -> S3Client:
    """A boto3 S3 client for the moto server at ``endpoint_url``, with fake credentials."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=FAKE_CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=FAKE_CREDENTIALS["aws_secret_access_key"],
    )
