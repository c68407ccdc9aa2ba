"""Working files of live processes, and the sweep of what no live process owns.

Every process keeps its temporary files (staged uploads, encrypted copies in flight, job
working folders, models being loaded for serving) in a private folder of its own under the
server's tmp dir, named for it::

    tmp/proc-<boot>-<pid>-<start>-<host>/

``boot`` is the first 8 hex digits of the kernel's boot id and ``start`` the process's start
time in clock ticks since boot, so a recycled pid, or the same pid after a reboot, names
another folder. Whether the owner still runs is known from that name alone (``/proc``), with
no lock to take and no window in which a new folder looks ownerless: a server started again
after a crash, or another server sharing the data dir, removes exactly the folders of
processes that are gone — a job worker of the new server keeps its own, and so does a
worker of the old one until it has exited. Folders of processes on other hosts (a data dir
shared over the network) are left to their own host.

Entries in the tmp dir that no process folder holds (written by code that predates this
layout, or directly into the tmp dir) go once no process on this machine has them open and
they have been untouched for :data:`UNOWNED_GRACE_S`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "proc-"
_NAME = re.compile(r"proc-([0-9a-f]{8})-(\d+)-(\d+)-([A-Za-z0-9._-]+)")
# Entries outside process folders that nothing holds open are kept this long after their
# last change: a writer may close a file and open it again right away (copy, then hash).
UNOWNED_GRACE_S = 2.0
_PROC_SELF = Path("/proc/self/stat")


@dataclass(frozen=True)
class Owner:
    """A process on a host, as named in its working folder."""

    boot: str
    pid: int
    start: int
    host: str

    @property
    def folder(self) -> str:
        """The name of this process's working folder."""
        return f"{PREFIX}{self.boot}-{self.pid}-{self.start}-{self.host}"

    @classmethod
    def parse(cls, name: str) -> Owner | None:
        """The owner a folder name stands for, or None for any other name."""
        match = _NAME.fullmatch(name)
        if match is None:
            return None
        boot, pid, start, host = match.groups()
        return cls(boot, int(pid), int(start), host)

    def alive(self) -> bool | None:
        """Whether the process still runs; None when it ran on another host."""
        if self.host != _host():
            return None
        if self.boot != _boot_id():
            return False
        return _start_time(self.pid) == self.start


def current_owner() -> Owner:
    """This process."""
    return _owner(os.getpid())


@functools.cache
def _owner(pid: int) -> Owner:
    return Owner(_boot_id(), pid, _start_time(pid) or 0, _host())


def process_dir(tmp_dir: Path) -> Path:
    """This process's private working folder under ``tmp_dir`` (mode 0700), made on demand.

    It is removed by :func:`sweep` once this process has ended, however it ended.
    """
    path = tmp_dir / current_owner().folder
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except FileNotFoundError:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
    return path


def remove_process_dir(tmp_dir: Path) -> None:
    """Remove this process's working folder and everything in it.

    Only for a process that uses ``tmp_dir`` for one purpose and is about to end (a job's
    worker); a server leaves its folder to the next sweep.
    """
    shutil.rmtree(tmp_dir / current_owner().folder, ignore_errors=True)


def sweep(tmp_dir: Path) -> int:
    """Remove what no live process owns from ``tmp_dir``; returns how many entries went."""
    if not tmp_dir.is_dir():
        return 0
    removed = 0
    unowned: list[Path] = []
    for entry in tmp_dir.iterdir():
        owner = Owner.parse(entry.name)
        if owner is None:
            unowned.append(entry)
        elif owner.alive() is False:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    if unowned:
        held = _open_files()
        cutoff = time.time() - UNOWNED_GRACE_S
        removed += sum(_remove_unheld(entry, held, cutoff) for entry in unowned)
    return removed


def _remove_unheld(entry: Path, held: set[tuple[int, int]], cutoff: float) -> int:
    """Remove ``entry`` (recursively) where nothing holds it open; 1 if it went whole."""
    try:
        info = entry.lstat()
    except FileNotFoundError:
        return 0
    if stat.S_ISDIR(info.st_mode):
        kept = 0
        with contextlib.suppress(OSError):
            for child in entry.iterdir():
                kept += 1 - _remove_unheld(child, held, cutoff)
        # Its own time as it was before the sweep removed anything from it.
        if kept or info.st_mtime >= cutoff:
            return 0
        with contextlib.suppress(OSError):
            entry.rmdir()
            return 1
        return 0
    if (info.st_dev, info.st_ino) in held or info.st_mtime >= cutoff:
        return 0
    with contextlib.suppress(FileNotFoundError):
        entry.unlink()
    return 1


def _open_files() -> set[tuple[int, int]]:
    """(device, inode) of every file a process of this machine that we may inspect has open."""
    held: set[tuple[int, int]] = set()
    proc = Path("/proc")
    if not proc.is_dir():
        return held
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:
            continue  # gone, or another user's process (whose files are not ours)
        for fd in fds:
            with contextlib.suppress(OSError):
                info = fd.stat()
                held.add((info.st_dev, info.st_ino))
    return held


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "localhost"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().replace("-", "")[:8]
    except OSError:
        return "0" * 8


def _start_time(pid: int) -> int | None:
    """The start time of a running process in clock ticks since boot; None if it is gone.

    A zombie (ended, not yet reaped) counts as gone. Without ``/proc`` the start time is
    unknown and 0 stands for any running process.
    """
    if not _PROC_SELF.exists():
        return _exists(pid)
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    except OSError:
        return _exists(pid)
    # After the command name: state is field 3 of stat(5), start time field 22.
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _exists(pid: int) -> int | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return 0
    return 0
