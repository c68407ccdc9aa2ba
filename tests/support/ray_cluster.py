"""A real Ray cluster of several nodes on this machine, for tests of the Ray executor.

Every node is its own ``ray start --block`` process in its own session, with its own
temporary directory, its own ports and a small share of CPUs and memory, and token
authentication on (as Ray 2.60 has it for a head node). A node is stopped by killing every
process of its session: never ``ray stop``, which stops every Ray process on the machine.

Use it as ``with ray_cluster(nodes=2) as cluster: ...``; give :attr:`RayCluster.env` to
every process that joins it (the Modelyard server).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.server import free_port

RAY = str(Path(sys.executable).with_name("ray"))
NODE_CPUS = 2
OBJECT_STORE_BYTES = 150 * 1024**2


@dataclass
class RayNode:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    manager_port: int
    killed: bool = False

    def kill(self) -> None:
        """Stop this node and every process of it at once, as if its machine vanished.

        Ray starts its workers in process groups of their own (and a worker's children, such
        as a job's ranks, sit in the worker's), so the node's whole session is killed, not
        only the process group of ``ray start`` and its raylet: workers left behind would
        run on until they noticed that their raylet was gone.
        """
        self.killed = True
        for _ in range(10):
            members = _session_members(self.process.pid)
            if not members:
                break
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)


@dataclass
class RayCluster:
    address: str
    env: dict[str, str]
    root: Path
    nodes: list[RayNode] = field(default_factory=list)

    def add_node(self, name: str, cpus: int = NODE_CPUS) -> RayNode:
        """Start one more worker node joining the head."""
        node = _start(self, name, head=False, cpus=cpus)
        self.nodes.append(node)
        return node

    def node(self, node_id: str) -> RayNode:
        """The node that Ray knows as ``node_id``."""
        port = _ask(
            self, f"next(n['NodeManagerPort'] for n in ray.nodes() if n['NodeID'] == {node_id!r})"
        )
        return next(node for node in self.nodes if str(node.manager_port) == port)


def _session_members(session: int) -> list[int]:
    """The live processes of session ``session`` (a ``ray start`` process's own session)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it ended meanwhile
        # pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == session and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _ports() -> list[str]:
    return [
        f"--object-manager-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]


def _start(cluster: RayCluster, name: str, *, head: bool, cpus: int) -> RayNode:
    temp = cluster.root / name
    temp.mkdir(parents=True, exist_ok=True)
    log = cluster.root / f"{name}.log"
    manager_port = free_port()
    command = [
        RAY,
        "start",
        "--block",
        "--disable-usage-stats",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={cpus}",
        "--num-gpus=0",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        f"--temp-dir={temp}",
        f"--node-manager-port={manager_port}",
        *_ports(),
    ]
    if head:
        command += [f"--port={cluster.address.rsplit(':', 1)[1]}", "--head"]
        # The head runs a headless dashboard process even so, by default on port 8265.
        command += ["--include-dashboard=false", f"--dashboard-port={free_port()}"]
    else:
        command.append(f"--address={cluster.address}")
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            env={**os.environ, **cluster.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RayNode(name, process, log, manager_port)


def _ask(cluster: RayCluster, expression: str) -> str:
    """What a short-lived driver prints for ``expression`` (given ``ray``); "" if it failed."""
    script = (
        f"import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False);print({expression})"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, cluster.address],
        env={**os.environ, **cluster.env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    return lines[-1] if done.returncode == 0 and lines else ""


def _alive_nodes(cluster: RayCluster) -> int:
    """How many nodes the head counts as alive."""
    return int(_ask(cluster, "sum(1 for n in ray.nodes() if n['Alive'])") or 0)


def wait_for_nodes(cluster: RayCluster, count: int, timeout: float = 120) -> None:
    """Wait until the head counts ``count`` alive nodes."""
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        for node in cluster.nodes:
            if not node.killed and node.process.poll() is not None:
                raise RuntimeError(f"Ray node {node.name} exited; see {node.log}")
        seen = _alive_nodes(cluster)
        if seen == count:
            return
        time.sleep(1)
    raise RuntimeError(f"the Ray cluster has {seen} alive nodes, not {count}")


@contextlib.contextmanager
def ray_cluster(nodes: int = 2, head_cpus: int = NODE_CPUS) -> Iterator[RayCluster]:
    """A head and ``nodes - 1`` worker nodes on 127.0.0.1; all killed afterwards.

    A head given no CPUs runs only the tasks that ask for none (a distributed job's
    coordinator), so every worker of a job lands on a node that can be killed. Their
    temporary directories are short paths under /tmp (Ray's Unix sockets live there, and a
    socket path may not exceed 107 bytes), removed afterwards.
    """
    root = Path(tempfile.mkdtemp(prefix="myray-"))
    token = secrets.token_hex(16)
    env = {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        # A killed node is declared dead within seconds, not half a minute.
        "RAY_health_check_period_ms": "1000",
        "RAY_health_check_failure_threshold": "3",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    cluster = RayCluster(address=f"127.0.0.1:{free_port()}", env=env, root=root)
    try:
        cluster.nodes.append(_start(cluster, "head", head=True, cpus=head_cpus))
        for index in range(1, nodes):
            time.sleep(2)  # the head's GCS first
            cluster.add_node(f"node{index}")
        wait_for_nodes(cluster, nodes)
        yield cluster
    finally:
        for node in reversed(cluster.nodes):
            node.kill()
        shutil.rmtree(root, ignore_errors=True)
