"""``client.jobs``: submit long work (training, compression, distillation), follow it live,
read its log, cancel it."""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Mapping
from typing import Any

from modelyard.client._http import HTTP, seg
from modelyard.client._job import Job
from modelyard.client._stream import follow
from modelyard.client._types import JobEvent

_BASE = "/api/v1/jobs"
# The largest page the server hands out.
EVENTS_PAGE = 500


class Jobs:
    """Create, list, inspect, follow and cancel jobs."""

    def __init__(self, http: HTTP) -> None:
        self._http = http

    def create(self, spec: Mapping[str, Any] | None = None, /, **fields: Any) -> Job:
        """Submit a job; the server checks it against its data set before queuing it.

        ``spec`` is the job spec of ``docs/api.md``, structured or flat; keyword arguments
        are merged into it. A spec that does not fit raises :class:`ValidationError`
        naming the field.

        Example::

            job = client.jobs.create(model_name="mlp", data="digits", optimizer="adam",
                                     learning_rate=1e-3, epochs=5)
            job.wait(progress=True)
        """
        body = {**(spec or {}), **fields}
        if not body:
            raise ValueError("create needs a job spec, e.g. {'type': 'train', ...}")
        return Job(self, self._http.object("POST", _BASE, json=body))

    def compress(
        self,
        source_model: str,
        version: int | str,
        method: Mapping[str, Any],
        eval_dataset: str,
        *,
        gate: Mapping[str, Any] | None = None,
        output_model: str | None = None,
        **extra: Any,
    ) -> Job:
        """Compress a version into a new one: quantize, prune, cast or export.

        ``method`` is one of ``{"name": "quantize", "scheme": "dynamic_int8"}``,
        ``{"name": "prune", "kind": "unstructured", "sparsity": 0.8}``,
        ``{"name": "prune", "kind": "structured", "amount": 0.5}``,
        ``{"name": "cast", "dtype": "float16"}`` or ``{"name": "export", "format": "onnx"}``.
        Parent and child are measured on ``eval_dataset``; ``gate``
        (``{"max_metric_drop": 0.01}``) keeps a child that falls further from being
        registered. The child goes to ``output_model`` (default: the source model).
        ``extra`` adds request fields (``label``, ``description``).

        Example::

            job = client.jobs.compress("digits-mlp", 3, {"name": "quantize",
                                       "scheme": "dynamic_int8"}, "digits-test",
                                       gate={"max_metric_drop": 0.01})
            job.wait()
            print(job.result["version"], job.result["report"]["ratio"])
        """
        body = {
            "type": "compress",
            "source": {"model": source_model, "version": version},
            "method": dict(method),
            "eval_dataset": eval_dataset,
        }
        return self._submit(body, gate=gate, output_model=output_model, **extra)

    def distill(
        self,
        teacher_model: str,
        version: int | str,
        student_spec: Mapping[str, Any],
        dataset: str,
        *,
        eval_dataset: str | None = None,
        temperature: float | None = None,
        alpha: float | None = None,
        epochs: int | None = None,
        gate: Mapping[str, Any] | None = None,
        output_model: str | None = None,
        **extra: Any,
    ) -> Job:
        """Train a smaller catalog model (``student_spec``) on ``dataset`` from a teacher.

        The student's ``input_shape`` and ``num_outputs`` default to the teacher's.
        ``eval_dataset`` (default: ``dataset``) is where teacher and student are measured.
        ``None`` leaves ``temperature`` (4.0), ``alpha`` (0.7, the weight of the teacher's
        soft targets) and ``epochs`` (30) at the server's defaults. ``extra`` adds request
        fields (``batch_size``, ``optimizer``, ``seed``, ``label``, ``description``).

        Example::

            job = client.jobs.distill("digits-mlp", "production",
                                      {"arch": "mlp", "hidden": [16]}, "digits-train",
                                      eval_dataset="digits-test", epochs=10)
        """
        body = {
            "type": "distill",
            "teacher": {"model": teacher_model, "version": version},
            "student": {"spec": dict(student_spec)},
            "dataset": dataset,
            "eval_dataset": eval_dataset or dataset,
        }
        options = {"temperature": temperature, "alpha": alpha, "epochs": epochs}
        return self._submit(body, gate=gate, output_model=output_model, **options, **extra)

    def finetune(
        self,
        source_model: str,
        version: int | str,
        dataset: str,
        eval_dataset: str,
        *,
        epochs: int | None = None,
        batch_size: int | None = None,
        optimizer: Mapping[str, Any] | str | None = None,
        gate: Mapping[str, Any] | None = None,
        output_model: str | None = None,
        **extra: Any,
    ) -> Job:
        """Train a catalog or Keras version further on ``dataset``, as a new version.

        ``None`` leaves ``epochs`` (3), ``batch_size`` (64) and ``optimizer`` (adam) at the
        server's defaults; ``extra`` adds request fields (``seed``, ``label``,
        ``description``).
        """
        body = {
            "type": "finetune",
            "source": {"model": source_model, "version": version},
            "dataset": dataset,
            "eval_dataset": eval_dataset,
        }
        optimizer_field = dict(optimizer) if isinstance(optimizer, Mapping) else optimizer
        return self._submit(
            body,
            gate=gate,
            output_model=output_model,
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizer_field,
            **extra,
        )

    def evaluate(
        self, source_model: str, version: int | str, eval_dataset: str, **extra: Any
    ) -> Job:
        """Measure one version on a data set: size, weights, latency and metric.

        The job's ``result["report"]`` is the measured row; ``extra`` adds request fields
        (``label``).
        """
        body = {
            "type": "evaluate",
            "source": {"model": source_model, "version": version},
            "eval_dataset": eval_dataset,
        }
        return self._submit(body, **extra)

    def explain(
        self,
        source_model: str,
        version: int | str,
        dataset: str,
        *,
        method: str = "occlusion",
        rows: int | None = None,
        **extra: Any,
    ) -> Job:
        """Global feature importance of one version over ``rows`` rows of a data set.

        Each input value's mean absolute attribution (against the mean row, for each row's
        predicted class) is stored on the version under
        ``params["feature_importance"][method]``, with a table's column names, and is the
        job's ``result["feature_importance"]``. ``method`` is ``occlusion`` or
        ``kernel_shap`` (every format), or ``integrated_gradients`` or ``saliency`` (catalog
        versions); ``extra`` adds request fields (``label``, ``n_steps``, ``n_samples``,
        ``window``, ``seed``).
        """
        body = {
            "type": "explain",
            "source": {"model": source_model, "version": version},
            "dataset": dataset,
            "method": method,
        }
        return self._submit(body, rows=rows, **extra)

    def _submit(self, body: dict[str, Any], **optional: Any) -> Job:
        """Create the job ``body`` describes, with the ``optional`` fields that are set."""
        for key, value in optional.items():
            if value is not None:
                body[key] = dict(value) if key == "gate" else value
        return self.create(body)

    def get(self, job_id: str) -> Job:
        """One job, as it is now."""
        return Job(self, self._http.object("GET", f"{_BASE}/{seg(job_id)}"))

    def list(self, status: str | None = None) -> builtins.list[Job]:
        """Your jobs, newest first (an admin sees everyone's); ``status`` filters them."""
        return [Job(self, j) for j in self._http.paginate(_BASE, {"status": status})]

    def cancel(self, job_id: str) -> Job:
        """Ask the server to stop a job; it is ``cancelled`` once it stops (within seconds)."""
        return Job(self, self._http.object("POST", f"{_BASE}/{seg(job_id)}/cancel"))

    def events(self, job_id: str, after: int = 0) -> builtins.list[JobEvent]:
        """The job's events numbered above ``after``, oldest first, as a list."""
        path = f"{_BASE}/{seg(job_id)}/events"
        found: builtins.list[JobEvent] = []
        while True:
            page = self._http.object("GET", path, params={"after": after, "limit": EVENTS_PAGE})
            items = [JobEvent.from_json(e) for e in page.get("items") or ()]
            found.extend(items)
            # Numbers only grow, so the next page starts after the last event of this one.
            if len(items) < EVENTS_PAGE:
                return found
            after = items[-1].seq

    def stream(self, job_id: str, last_event_id: int | str | None = None) -> Iterator[JobEvent]:
        """The job's events as they happen, from the first (or after ``last_event_id``).

        Reads the server's live event stream; a dropped connection is resumed with
        ``Last-Event-ID``, so no event is missed or repeated. Ends when the server ends the
        stream, right after the job's final event.

        Example::

            for event in client.jobs.stream(job.id):
                if event.type == "epoch":
                    print(event.data["epoch"], event.data["val"])
        """
        return self._follow(job_id, after=int(last_event_id or 0))

    def logs(self, job_id: str) -> str:
        """The job's log as text, one line per event."""
        return self._http.text("GET", f"{_BASE}/{seg(job_id)}/logs")

    def _follow(
        self, job_id: str, *, after: int, deadline: float | None = None
    ) -> Iterator[JobEvent]:
        return follow(
            self._http,
            f"{_BASE}/{seg(job_id)}/events",
            after=after,
            finished=lambda: self.get(job_id).done,
            deadline=deadline,
        )
