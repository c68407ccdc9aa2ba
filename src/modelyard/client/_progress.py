"""The progress bar of :meth:`Job.wait`: epoch, loss, validation metric and time left.

rich is imported only when a bar is asked for, so the SDK stays light to import.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from modelyard.client._types import JobEvent

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from modelyard.client._job import Job


class Reporter(Protocol):
    """What :meth:`Job.wait` tells whoever shows its progress."""

    def job(self, job: Job) -> None:
        """The job's state was fetched."""

    def event(self, event: JobEvent) -> None:
        """An event arrived from the job's stream."""


class _Silent:
    def job(self, job: Job) -> None:
        pass

    def event(self, event: JobEvent) -> None:
        pass


@contextmanager
def job_progress(job: Job, *, enabled: bool) -> Iterator[Reporter]:
    """A reporter that draws a bar on stderr while the block runs (or does nothing)."""
    if not enabled:
        yield _Silent()
        return
    # rich draws only on an interactive terminal, so it loads where it draws.
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
    from rich.table import Column

    columns = (
        TextColumn(
            "{task.description}",
            table_column=Column(max_width=28, no_wrap=True, overflow="ellipsis"),
        ),
        BarColumn(bar_width=20),
        TaskProgressColumn(),
        TextColumn("{task.fields[epoch]} {task.fields[loss]} {task.fields[val]}"),
        _eta_column(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        yield _Bar(bar, job)


def _eta_column() -> Any:
    """A column counting down from the server's last estimate, between its updates."""
    # rich draws only on an interactive terminal, so it loads where it draws.
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class EtaColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            eta = task.fields.get("eta_s")
            if eta is None or task.finished:
                return Text("")
            left = max(0.0, float(eta) - (time.monotonic() - task.fields["eta_at"]))
            minutes, seconds = divmod(round(left), 60)
            return Text(f"ETA {minutes}:{seconds:02d}", style="progress.remaining")

    return EtaColumn()


class _Bar:
    def __init__(self, bar: Progress, job: Job) -> None:
        self._bar = bar
        name = job.spec.get("output_model")
        label = name if isinstance(name, str) else f"job {job.id[:8]}"
        config = job.spec.get("config")
        epochs = config.get("epochs") if isinstance(config, Mapping) else job.spec.get("epochs")
        self._epochs: Any = epochs
        self._task: TaskID = bar.add_task(
            label,
            total=1.0,
            epoch="",
            loss="",
            val="",
            eta_s=job.eta_s,
            eta_at=time.monotonic(),
            status="",
        )
        bar.update(self._task, completed=job.progress)

    def job(self, job: Job) -> None:
        fields: dict[str, Any] = {"status": _status(job.status)}
        if job.status == "succeeded":
            fields.update(completed=1.0, eta_s=None)
        elif job.done:
            fields.update(eta_s=None)
        self._bar.update(self._task, **fields)

    def event(self, event: JobEvent) -> None:
        data = event.data
        if event.type == "status":
            self._bar.update(self._task, status=_status(str(data.get("status"))))
        elif event.type == "step":
            self._bar.update(
                self._task, epoch=self._epoch(data), loss=f"loss {_num(data.get('loss'))}"
            )
        elif event.type == "epoch":
            self._epochs = data.get("epochs", self._epochs)
            fields: dict[str, Any] = {"epoch": self._epoch(data), "val": _val(data.get("val"))}
            if isinstance(data.get("progress"), int | float):
                fields["completed"] = float(data["progress"])
            if "eta_s" in data:
                fields.update(eta_s=data["eta_s"], eta_at=time.monotonic())
            self._bar.update(self._task, **fields)

    def _epoch(self, data: Mapping[str, Any]) -> str:
        epoch = data.get("epoch")
        if epoch is None:
            return ""
        return f"epoch {epoch}/{self._epochs}" if self._epochs else f"epoch {epoch}"


def _status(status: str) -> str:
    """The status worth showing: a running job's bar speaks for itself."""
    style = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(status)
    if style:
        return f"[{style}]{status}[/]"
    return "" if status == "running" else status


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "-"


def _val(metrics: Any) -> str:
    """The validation metric worth a glance: accuracy if measured, else the loss."""
    if not isinstance(metrics, Mapping) or not metrics:
        return ""
    name = "accuracy" if "accuracy" in metrics else "loss" if "loss" in metrics else None
    if name is None:
        name = next(iter(metrics))
    short = {"accuracy": "acc"}.get(name, name)
    return f"val_{short} {_num(metrics[name])}"
