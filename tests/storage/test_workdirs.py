"""Working folders of live processes survive a sweep; whatever no live process owns does not."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.storage.workdirs import UNOWNED_GRACE_S, Owner, current_owner, process_dir, sweep

CHILD = """
import sys
from pathlib import Path
from modelyard.storage.workdirs import process_dir
work = process_dir(Path(sys.argv[1]))
(work / "x.npy").write_bytes(b"decrypted training data")
print(work, flush=True)
sys.stdin.read()
"""


@pytest.fixture
def child(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """A live process that wrote a file into its own working folder under ``tmp_path``."""
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process, Path(process.stdout.readline().strip())
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def _backdate(path: Path) -> None:
    past = os.stat(path).st_mtime - 10 * UNOWNED_GRACE_S - 3600
    os.utime(path, (past, past))


def test_a_live_process_keeps_its_folder_and_a_killed_one_loses_it(
    child: tuple[subprocess.Popen[str], Path], tmp_path: Path
) -> None:
    process, work = child
    assert work.parent == tmp_path and (work / "x.npy").is_file()
    _backdate(work / "x.npy")
    _backdate(work)

    assert sweep(tmp_path) == 0
    assert (work / "x.npy").is_file()

    process.send_signal(signal.SIGKILL)
    # Wait for its exit but leave it unreaped: a zombie is a process that has ended.
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
    assert sweep(tmp_path) == 1
    assert not work.exists()


def test_a_fresh_folder_of_an_ended_process_goes_regardless_of_age(tmp_path: Path) -> None:
    me = current_owner()
    recycled_pid = dataclasses.replace(me, start=me.start + 1)
    other_boot = dataclasses.replace(me, boot="ffffffff" if me.boot != "ffffffff" else "00000000")
    other_host = dataclasses.replace(me, host=me.host + "-elsewhere")
    for owner in (recycled_pid, other_boot, other_host):
        (tmp_path / owner.folder).mkdir()
        (tmp_path / owner.folder / "upload-1.part").write_bytes(b"x")
    mine = process_dir(tmp_path)

    assert sweep(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other_host.folder])


def test_owner_names_round_trip() -> None:
    me = current_owner()
    assert Owner.parse(me.folder) == me
    assert me.alive() is True
    assert Owner.parse("job-1234-abcd") is None


def test_unowned_leftovers_go_once_nothing_holds_them(tmp_path: Path) -> None:
    held = tmp_path / "spool" / "part-1"
    held.parent.mkdir()
    loose = tmp_path / "upload-old.part"
    loose.write_bytes(b"y")
    fresh = tmp_path / "upload-new.part"
    fresh.write_bytes(b"z")
    with held.open("wb") as out:
        out.write(b"x")
        out.flush()
        for path in (held, held.parent, loose):
            _backdate(path)
        # Open, or written within the grace period: kept.
        assert sweep(tmp_path) == 1
        assert held.is_file() and fresh.is_file() and not loose.exists()
    _backdate(held.parent)
    _backdate(fresh)
    assert sweep(tmp_path) == 2
    assert list(tmp_path.iterdir()) == []
