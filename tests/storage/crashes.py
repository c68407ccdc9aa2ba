"""Crashing real server processes: kill -9 with every process they started tracked by PID,
and scanning what is left on disk."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from tests.support.process import ServerProcess, server_process

SCAN_CHUNK = 4 * 1024 * 1024


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def descendants(pid: int) -> set[int]:
    """Every running process below ``pid`` (the fork server, job workers, their ranks)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and fields[0] not in ("Z", "X"):
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def wait_gone(pids: Iterable[int], bound_s: float = 60) -> None:
    """Wait for ``pids`` to end (a bound, not a timing assertion)."""
    deadline = time.monotonic() + bound_s
    left = set(pids)
    while left:
        left = {pid for pid in left if running(pid)}
        if left and time.monotonic() > deadline:
            raise AssertionError(f"processes {sorted(left)} outlived their server")
        time.sleep(0.05)


def kill_by_pid(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class TrackedServer:
    """A ``modelyard serve`` process whose own processes are remembered as they appear."""

    def __init__(self, srv: ServerProcess) -> None:
        self.srv = srv
        self.url = srv.url
        self.pid = srv.process.pid
        self.seen: set[int] = set()

    def track(self) -> set[int]:
        """Remember the server's processes running now; returns them."""
        now = descendants(self.pid)
        self.seen |= now
        return now

    def crash(self, *, with_workers: bool = False) -> None:
        """kill -9 the server and wait until every process it started has ended with it.

        ``with_workers`` kills the server's processes too, in the same instant (the whole
        service killed for memory, or the machine losing power): they get no chance to
        clean up when they see the server gone. Until the server is reaped, it still looks
        alive to them.
        """
        running_now = self.track()
        self.srv.process.send_signal(signal.SIGKILL)
        if with_workers:
            kill_by_pid(running_now)
        self.srv.process.wait(timeout=30)
        wait_gone(self.seen)


@contextlib.contextmanager
def tracked_server(data_dir: Path, log: Path, **env: str) -> Iterator[TrackedServer]:
    """A server process over ``data_dir``; whatever it started is killed by PID at the end."""
    tracked: TrackedServer | None = None
    try:
        with server_process(data_dir, log, **env) as srv:
            tracked = TrackedServer(srv)
            yield tracked
            tracked.track()
    finally:
        if tracked is not None:
            kill_by_pid(tracked.seen)


def files_under(*roots: Path) -> list[Path]:
    """Every regular file below ``roots``."""
    return [p for root in roots for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def find_needles(roots: Iterable[Path], needles: dict[str, bytes]) -> list[tuple[str, Path]]:
    """(needle name, file) for every needle found in a file below ``roots``."""
    overlap = max(len(n) for n in needles.values())
    found: list[tuple[str, Path]] = []
    for path in files_under(*roots):
        tail = b""
        with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
            while chunk := f.read(SCAN_CHUNK):
                window = tail + chunk
                found += [(name, path) for name, n in needles.items() if n in window]
                tail = window[-overlap:]
    return sorted(set(found))
