"""Per-step cost of data-parallel training (DDP), 2 workers vs 1, on an MLP and a CNN.

Every rank runs the project's own DDP loop (:func:`modelyard.training.ddp.train_ddp`) under
the project's elastic launcher (:func:`modelyard.training.distributed.launch`, spawn), with
the same rows per rank in both runs: a 2-worker step does the work of a 1-worker step plus
the gradient all-reduce (weak scaling). On a CPU-only machine both ranks share its cores, so
this reports the overhead per step, not a speed-up, and splits it: the single-process loop
(:func:`modelyard.training.train`) run in every rank at once, with no communication, gives
the CPU contention; a gloo all-reduce of a flat tensor of the gradient's size, timed alone
in the 2-rank group, gives the pure communication. With two or more CUDA GPUs the same runs
repeat on nccl; the ranks are module-level functions so that spawned processes import them.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.load import OtherLoad

BATCH_PER_RANK = 64
WARMUP_STEPS = 16
TIMED_STEPS = 64
# Steps between the step events the clock stamps (a job's default is 10).
STAMP_EVERY = 8
ALLREDUCE_WARMUP = 5
ALLREDUCE_REPEATS = 30
ROUNDS = 2
CLASSES = 10
OPTIMIZER = {"name": "sgd", "lr": 0.01}
# The models of bench/training.py: a wide MLP (big gradient, little compute per parameter)
# and a CNN (small gradient, much compute per parameter).
MLP = {"arch": "mlp", "input_shape": [784], "hidden": [512, 512], "num_outputs": CLASSES}
CNN = {
    "arch": "cnn",
    "input_shape": [1, 28, 28],
    "conv": [{"channels": 32}, {"channels": 64}],
    "num_outputs": CLASSES,
}
CASES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("mlp 784-512-512-10", MLP),
    ("cnn conv32-conv64", CNN),
)


class StepClock:
    """Callbacks that stamp every step event and stop the run after the timed steps.

    Both loops emit a step event every :data:`STAMP_EVERY` steps; the time between two
    events divided by the steps between them is one step, with what a job's steps carry in
    DDP: the logged loss's all-reduce and the ranks' periodic stop check. Stopping early
    skips the final evaluation over all rows, which is not what is measured.
    """

    def __init__(self) -> None:
        self.stamps: list[tuple[int, float]] = []

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "step":
            self.stamps.append((int(event["step"]), time.perf_counter()))

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Drop the checkpoint."""

    def should_stop(self) -> bool:
        return bool(self.stamps) and self.stamps[-1][0] >= WARMUP_STEPS + TIMED_STEPS

    def timed_ms(self) -> list[float]:
        """Milliseconds per step, averaged between consecutive events after the warm-up."""
        timed = [(step, at) for step, at in self.stamps if step >= WARMUP_STEPS]
        return [(t1 - t0) * 1e3 / (s1 - s0) for (s0, t0), (s1, t1) in itertools.pairwise(timed)]


def synthetic(spec: dict[str, Any], rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features in [0, 1] of the spec's input shape and random labels, from a fixed seed."""
    rng = np.random.default_rng(seed)
    x = rng.random((rows, *spec["input_shape"]), dtype=np.float32)
    y = rng.integers(0, CLASSES, rows).astype(np.int64)
    return x, y


def train_config(device: str, batch_size: int) -> dict[str, Any]:
    return {
        "optimizer": OPTIMIZER,
        "epochs": 1,
        "batch_size": batch_size,
        "seed": 0,
        "device": device,
        "log_every_steps": STAMP_EVERY,
    }


def allreduce_ms(numel: int, device: Any) -> list[float]:
    """Milliseconds of back-to-back all-reduces of ``numel`` float32 in the current group."""
    import torch
    import torch.distributed as dist

    tensor = torch.ones(numel, dtype=torch.float32, device=device)
    times = []
    dist.barrier()
    for index in range(ALLREDUCE_WARMUP + ALLREDUCE_REPEATS):
        start = time.perf_counter()
        dist.all_reduce(tensor)
        if tensor.is_cuda:
            torch.cuda.synchronize(device)
        if index >= ALLREDUCE_WARMUP:
            times.append((time.perf_counter() - start) * 1e3)
    return times


def rank_main(device_name: str) -> dict[str, dict[str, Any]]:
    """One rank of a launch: for every case, DDP steps, then the single-process loop in all
    ranks at once (same rows per rank, no communication), then the all-reduce alone.

    Only rank 0's clocks are reported; in DDP the ranks move in lock-step anyway.
    """
    import torch
    import torch.distributed as dist

    from modelyard.nn import build_model
    from modelyard.training import train
    from modelyard.training.ddp import train_ddp
    from modelyard.training.distributed import init_group, rank_device

    torch.set_num_threads(1)
    device = rank_device(device_name)
    init_group(device)
    world = dist.get_world_size()
    out: dict[str, dict[str, Any]] = {}
    for name, spec in CASES:
        # One epoch with room for every timed step: the clock stops the run before it ends.
        x, y = synthetic(spec, (WARMUP_STEPS + TIMED_STEPS + 1) * BATCH_PER_RANK * world)
        ddp = StepClock()
        dist.barrier()
        train_ddp(spec, train_config(device_name, BATCH_PER_RANK * world), x, y, callbacks=ddp)
        loop = StepClock()
        share = len(x) // world
        dist.barrier()
        train(spec, train_config(str(device), BATCH_PER_RANK), x[:share], y[:share], callbacks=loop)
        params = sum(p.numel() for p in build_model(spec).parameters() if p.requires_grad)
        out[name] = {
            "params": params,
            "ddp": ddp.timed_ms(),
            "loop": loop.timed_ms(),
            "allreduce": allreduce_ms(params, device) if world > 1 else [],
        }
    dist.destroy_process_group()
    return out


@dataclass(frozen=True)
class Timing:
    """Best-of-rounds medians (ms) of one case on one backend."""

    params: int
    ddp1: float
    ddp2: float
    loop1: float
    loop2: float
    allreduce: float

    @property
    def overhead(self) -> float:
        return self.ddp2 - self.ddp1

    @property
    def contention(self) -> float:
        return self.loop2 - self.loop1

    @property
    def sync(self) -> float:
        """What synchronising two ranks adds beyond DDP with one: the overhead less the
        contention."""
        return (self.ddp2 - self.loop2) - (self.ddp1 - self.loop1)


def _best(rounds: list[dict[str, dict[str, Any]]], name: str, key: str) -> float:
    """The lowest of the rounds' median step times: the round least disturbed."""
    return min(statistics.median(run[name][key]) for run in rounds)


def measure(device: str, other: OtherLoad) -> dict[str, Timing]:
    """Launch 1- and 2-worker groups in alternating order, ``ROUNDS`` of each."""
    from modelyard.training.distributed import launch, parse_distributed

    rounds: dict[int, list[dict[str, dict[str, Any]]]] = {1: [], 2: []}
    for round_ in range(ROUNDS):
        # Alternate the order so that a burst of other work on the host hits both sides alike.
        for workers in (1, 2) if round_ % 2 == 0 else (2, 1):
            config = parse_distributed({"strategy": "ddp", "workers": workers, "max_restarts": 0})
            result = other.measure(lambda config=config: launch(config, rank_main, device))
            rounds[workers].append(result[0])
    return {
        name: Timing(
            params=rounds[1][0][name]["params"],
            ddp1=_best(rounds[1], name, "ddp"),
            ddp2=_best(rounds[2], name, "ddp"),
            loop1=_best(rounds[1], name, "loop"),
            loop2=_best(rounds[2], name, "loop"),
            allreduce=_best(rounds[2], name, "allreduce"),
        )
        for name, _spec in CASES
    }


def report(backend: str, timings: dict[str, Timing]) -> None:
    print(
        f"{'model':<20}{'params':>9}{'grad MB':>9}{'rows/rank':>10}{'1w ms':>8}{'2w ms':>8}"
        f"{'+ms/step':>10}{'+%':>7}{'all-reduce ms':>15}{'1w samples/s':>14}{'2w samples/s':>14}"
    )
    for name, t in timings.items():
        grad_mb = t.params * 4 / 2**20
        print(
            f"{name:<20}{t.params:>9}{grad_mb:>9.2f}{BATCH_PER_RANK:>10}{t.ddp1:>8.2f}"
            f"{t.ddp2:>8.2f}{t.overhead:>+10.2f}{100 * t.overhead / t.ddp1:>+6.0f}%"
            f"{t.allreduce:>15.2f}{BATCH_PER_RANK / t.ddp1 * 1e3:>14.0f}"
            f"{2 * BATCH_PER_RANK / t.ddp2 * 1e3:>14.0f}"
        )
    print(
        f"where the overhead goes ({backend}): the single-process loop in 1 rank vs in 2 ranks "
        "at once (same rows per rank, no communication)"
    )
    print(
        f"{'model':<20}{'loop 1 ms':>11}{'loop 2 ms':>11}{'contention':>12}"
        f"{'ddp sync':>10}{'all-reduce alone':>18}"
    )
    for name, t in timings.items():
        print(
            f"{name:<20}{t.loop1:>11.2f}{t.loop2:>11.2f}{t.contention:>+12.2f}"
            f"{t.sync:>+10.2f}{t.allreduce:>18.2f}"
        )


def main() -> None:
    import torch

    other = OtherLoad()
    cpus = os.cpu_count()
    print(
        f"data-parallel overhead per step, 2 workers vs 1: the project's train_ddp under its "
        f"elastic launcher (spawn), {BATCH_PER_RANK} rows per rank per step (global batch "
        f"{BATCH_PER_RANK} x workers), sgd, 1 torch thread per rank, {cpus} CPUs; median step "
        f"time on rank 0 over {TIMED_STEPS} steps (in spans of {STAMP_EVERY}) after "
        f"{WARMUP_STEPS} warm-up steps, best of "
        f"{ROUNDS} alternating launches per worker count"
    )
    print(
        f"gloo on the CPU: the 2 ranks share the machine's {cpus} cores (with gloo's threads "
        "and anything else running), so the 2-worker step also includes CPU contention; "
        "'all-reduce' is a gloo all-reduce of a flat float32 tensor of the gradient's size "
        "timed alone in the 2-rank group: the communication by itself"
    )
    report("gloo", measure("cpu", other))
    print(
        "+ms/step = 2w - 1w step time; samples/s = global batch / step time; contention = "
        "loop 2 - loop 1; ddp sync = +ms/step - contention (what DDP's gradient all-reduce, "
        "its hooks, the logged loss's all-reduce and the periodic stop check add with 2 "
        "ranks; DDP splits the gradient in buckets and overlaps their all-reduce with the "
        "backward pass)"
    )
    gpus = torch.cuda.device_count()
    if gpus >= 2:
        print(f"\nnccl on {gpus} CUDA GPUs ({torch.cuda.get_device_name(0)}), one GPU per rank")
        report("nccl", measure("cuda", other))
    elif gpus == 1:
        print("nccl: not measured, this machine has 1 CUDA GPU and DDP on nccl needs one per rank")
    else:
        print("nccl: not measured, this machine has no CUDA GPU")
    print(
        f"other processes on the host kept {statistics.mean(other.runs):.2f} CPUs busy on "
        f"average during the launches (at most {max(other.runs):.2f} in one); the numbers are "
        "only clean near 0"
    )


if __name__ == "__main__":
    main()
