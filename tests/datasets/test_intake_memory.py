"""Refusing a bomb takes bounded memory: measured in a fresh process, not assumed.

Each case is ingested under the limits of a server with default settings, in a child
process that first takes in a small file of the same format (imports, thread pools), then
measures how far its peak resident memory grows and the peak of Python's allocations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.datasets.conftest import MiB, gzip_of

BOUND = 100 * MiB

MEASURE = """
import json, resource, sys, tracemalloc
from pathlib import Path
from modelyard.config import Settings
from modelyard.datasets.formats import ingest
from modelyard.datasets.formats.limits import IntakeLimits
from modelyard.errors import ModelyardError

source, warm, out = (Path(arg) for arg in sys.argv[1:4])
limits = IntakeLimits.from_settings(Settings())
ingest([warm], out / "warm", limits=limits)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
try:
    parsed = ingest([source], out / "source", limits=limits)
    outcome = f"accepted {parsed.num_rows} rows"
except ModelyardError as exc:
    outcome = f"{type(exc).__name__}: {exc}"
traced = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
print(json.dumps({"outcome": outcome, "rss_growth": grown, "traced_peak": traced}))
"""


def measure(source: Path, warm: Path, tmp_path: Path) -> dict[str, Any]:
    """Ingest ``source`` in a child process; its outcome and memory figures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(source), str(warm), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _jsonl_line_bomb(root: Path) -> tuple[Path, Path]:
    """1 MB of gzip holding one line of a GiB."""
    bomb = root / "bomb.jsonl.gz"
    bomb.write_bytes(gzip_of((b'{"a": "', 1), (b"x", 1024 * MiB), (b'"}\n', 1)))
    warm = root / "warm.jsonl"
    warm.write_bytes(b'{"a": "x"}\n')
    return bomb, warm


def _csv_bomb(root: Path) -> tuple[Path, Path]:
    """130 KB of gzip holding 64 million one-digit rows."""
    bomb = root / "bomb.csv.gz"
    bomb.write_bytes(gzip_of((b"a\n", 1), (b"1\n", 64 * MiB)))
    warm = root / "warm.csv.gz"
    warm.write_bytes(gzip_of((b"a\n", 1), (b"1\n", 10)))
    return bomb, warm


def _wide_csv(root: Path) -> tuple[Path, Path]:
    """0.9 MB: a header of 100,000 columns and one row."""
    wide = root / "wide.csv"
    header = ",".join(f"c{i}" for i in range(100_000))
    wide.write_text(header + "\n" + ",".join(["0"] * 100_000) + "\n")
    warm = root / "warm.csv"
    warm.write_text("a,b\n1,2\n")
    return wide, warm


def _npz_bomb(root: Path) -> tuple[Path, Path]:
    """130 KB of NPZ holding 128 MiB of zeros."""
    bomb = root / "bomb.npz"
    with bomb.open("wb") as f:
        np.savez_compressed(f, x=np.zeros((128, MiB), np.uint8))
    warm = root / "warm.npz"
    with warm.open("wb") as f:
        np.savez_compressed(f, x=np.zeros((2, 2), np.uint8))
    return bomb, warm


def _parquet_bomb(root: Path) -> tuple[Path, Path]:
    """A few KB of Parquet holding 32 million equal int64 values (256 MiB decoded)."""
    bomb = root / "bomb.parquet"
    chunk = pa.table({"a": np.full(MiB, 7, np.int64)})
    with pq.ParquetWriter(bomb, chunk.schema, compression="zstd") as writer:
        for _ in range(32):
            writer.write_table(chunk)
    warm = root / "warm.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), warm)
    return bomb, warm


def _fortran_npz(root: Path) -> tuple[Path, Path]:
    """A 128 MiB Fortran-ordered array, which intake must put in C order."""
    source = root / "fortran.npz"
    with source.open("wb") as f:
        np.savez(f, x=np.asfortranarray(np.ones((4096, 4096), np.float64)))
    warm = root / "warm.npz"
    with warm.open("wb") as f:
        np.savez(f, x=np.asfortranarray(np.ones((3, 3), np.float64)))
    return source, warm


CASES: list[tuple[str, Callable[[Path], tuple[Path, Path]], str, bool]] = [
    ("jsonl-gigabyte-line", _jsonl_line_bomb, "PayloadTooLarge: JSONL line 1 is longer", True),
    ("csv-gzip-bomb", _csv_bomb, "PayloadTooLarge: the CSV file expands to at least", True),
    ("csv-100000-columns", _wide_csv, "PayloadTooLarge: the CSV file has more than", True),
    ("npz-bomb", _npz_bomb, "PayloadTooLarge: the NPZ archive expands to", True),
    ("parquet-bomb", _parquet_bomb, "PayloadTooLarge: the Parquet file expands to", True),
    # Its canonical file is written through a memory map, whose pages count as resident:
    # only Python's (and numpy's) allocations say whether the array was loaded whole.
    ("npz-fortran-order", _fortran_npz, "accepted 4096 rows", False),
]


@pytest.mark.parametrize(("case", "make", "outcome", "check_rss"), CASES, ids=[c[0] for c in CASES])
def test_intake_memory_stays_bounded(
    tmp_path: Path,
    case: str,
    make: Callable[[Path], tuple[Path, Path]],
    outcome: str,
    check_rss: bool,
) -> None:
    source, warm = make(tmp_path)

    result = measure(source, warm, tmp_path)

    assert result["outcome"].startswith(outcome), result
    assert result["traced_peak"] < BOUND, result
    if check_rss:
        assert result["rss_growth"] < BOUND, result
