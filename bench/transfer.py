"""Upload and download of a 1 GiB artifact through the server vs a local file copy.

Prints throughput ratios (server ÷ local copy; goal ≥ 0.5) and the server's peak RSS during
the upload (goal < 300 MB).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

from bench._server import PeakRss, server_process

MIB = 1024 * 1024


def write_safetensors(path: Path, size_mib: int) -> dict[str, object]:
    """A catalog MLP whose first layer holds ~size_mib MiB, written chunk by chunk."""
    import torch

    from modelyard.nn import build_model

    inputs, hidden = 8192, size_mib * MIB // (8192 * 4)
    spec: dict[str, object] = {
        "arch": "mlp",
        "input_shape": [inputs],
        "hidden": [hidden],
        "num_outputs": 2,
    }
    with torch.device("meta"):
        shapes = {k: list(v.shape) for k, v in build_model(spec).state_dict().items()}
    header: dict[str, object] = {"__metadata__": {"modelyard.spec": json.dumps(spec)}}
    offset = 0
    for name, shape in shapes.items():
        n = 4
        for d in shape:
            n *= d
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    block = os.urandom(MIB)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        left = offset
        while left:
            step = min(left, MIB)
            f.write(block[:step])
            left -= step
    return spec


def _local_copy(src: Path, dest: Path, *, durable: bool) -> float:
    t0 = time.perf_counter()
    with src.open("rb") as fin, dest.open("wb") as fout:
        shutil.copyfileobj(fin, fout, MIB)
        if durable:
            fout.flush()
            os.fsync(fout.fileno())
    seconds = time.perf_counter() - t0
    dest.unlink()
    return seconds


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        yield from iter(lambda: f.read(MIB), b"")


def main(size_mib: int = 1024) -> None:
    with tempfile.TemporaryDirectory(prefix="modelyard-transfer-") as tmp:
        src = Path(tmp) / "model.safetensors"
        write_safetensors(src, size_mib)
        size = src.stat().st_size

        copy_s = _local_copy(src, Path(tmp) / "copy.bin", durable=False)
        durable_s = _local_copy(src, Path(tmp) / "copy.bin", durable=True)

        with server_process() as srv:
            auth = {"Authorization": f"Bearer {srv.key}"}
            with httpx.Client(base_url=srv.url, headers=auth, timeout=600) as api:
                api.post("/api/v1/models", json={"name": "big"}).raise_for_status()
                baseline = psutil.Process(srv.process.pid).memory_info().rss
                with PeakRss(srv.process.pid) as rss:
                    t0 = time.perf_counter()
                    reply = api.post(
                        "/api/v1/models/big/versions",
                        params={"filename": "model.safetensors"},
                        content=file_chunks(src),
                        headers={"Content-Length": str(size)},
                    )
                    up_s = time.perf_counter() - t0
                reply.raise_for_status()
                dest = Path(tmp) / "pulled.safetensors"
                t0 = time.perf_counter()
                with (
                    api.stream("GET", "/api/v1/models/big/versions/1/download") as stream,
                    dest.open("wb") as out,
                ):
                    for chunk in stream.iter_bytes(MIB):
                        out.write(chunk)
                down_s = time.perf_counter() - t0
                if dest.stat().st_size != size:
                    raise SystemExit("download size mismatch")

    gib = size / 1024**3
    print(f"artifact: {size / MIB:.0f} MiB safetensors (spec checked from the header)")
    print("ratios: server throughput / local copy throughput (goal >= 0.5); the server makes")
    print("every blob durable (fsync) before it is visible, so the durable copy is the peer.")
    header = f"{'operation':<30}{'seconds':>9}{'GiB/s':>8}{'vs copy':>10}{'vs durable copy':>17}"
    print(header)
    rows = [
        ("local copy (page cache)", copy_s),
        ("local copy + fsync", durable_s),
        ("upload through server", up_s),
        ("download through server", down_s),
    ]
    for name, seconds in rows:
        print(
            f"{name:<30}{seconds:>9.2f}{gib / seconds:>8.2f}{copy_s / seconds:>10.2f}"
            f"{durable_s / seconds:>17.2f}"
        )
    print(
        f"server RSS: {baseline / MIB:.0f} MiB before the upload (torch and the catalog are "
        f"loaded at start), peak {rss.peak / MIB:.0f} MiB during it, "
        f"growth {(rss.peak - baseline) / MIB:.0f} MiB (goal: peak < 300 MB)"
    )


if __name__ == "__main__":
    main()
