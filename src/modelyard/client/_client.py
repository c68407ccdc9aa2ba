"""The :class:`Client`: one connection pool, one API key, one attribute per resource."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from modelyard.client._deployment import Deployment
from modelyard.client._fit import fit
from modelyard.client._http import HTTP, Verify
from modelyard.client._job import Job
from modelyard.client._llm import LLM, LLMModels, openai_client
from modelyard.client._resources import Datasets, Deployments, Jobs, Keys, Principals
from modelyard.client._resources.deployments import TrafficLike
from modelyard.client._resources.projects import Projects
from modelyard.client._resources.usage import Usage
from modelyard.client._types import WhoAmI

if TYPE_CHECKING:
    import openai
    from numpy.typing import ArrayLike


class Client:
    """A connection to a Modelyard server.

    ``transport`` replaces httpx's network transport (tests pass an
    :class:`httpx.MockTransport` or :class:`httpx.ASGITransport`). ``timeout`` is in
    seconds per network operation (connect, each read, each write), not per transfer, so
    large uploads and downloads are not cut short; ``None`` waits forever. ``verify``
    checks an ``https://`` server's certificate: against the usual CAs (True), a CA bundle
    (the path of a PEM file, for a server with its own or a self-signed certificate), or an
    ``ssl.SSLContext``.

    Example::

        from modelyard import Client

        with Client("http://127.0.0.1:8000", api_key="my_...") as client:
            print(client.whoami().principal.name)
            client.datasets.push("digits", "digits.csv", label="target")
            for model in client.models.list():
                print(model.name, model.latest_version)

        # A server started with --ssl-certfile, its certificate signed by ca.pem:
        client = Client("https://models.internal:8000", api_key="my_...", verify="ca.pem")
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float | None = 60.0,
        transport: httpx.BaseTransport | None = None,
        verify: Verify = True,
    ) -> None:
        self._http = HTTP(base_url, api_key, timeout=timeout, transport=transport, verify=verify)
        self.principals = Principals(self._http)
        """Users and service accounts (admin only)."""
        self.keys = Keys(self._http)
        """API keys."""
        self.projects = Projects(self._http)
        """Projects, their members and the audit log."""
        self.usage = Usage(self._http)
        """Usage, costs, limits and budgets."""
        self.datasets = Datasets(self._http)
        """Data sets."""
        self.models = LLMModels(self._http)
        """The model registry: models, versions, aliases, Hugging Face folders."""
        self.jobs = Jobs(self._http)
        """Jobs: training runs and their live events."""
        self.deployments = Deployments(self._http)
        """Deployments: model versions served under a name."""
        self.llm = LLM(self._http)
        """Language and embedding models through the OpenAI-compatible ``/v1`` API."""

    @property
    def base_url(self) -> str:
        """The server's address, as given."""
        return str(self._http.client.base_url)

    def openai(self) -> openai.OpenAI:
        """The official ``openai`` client pointed at ``<base_url>/v1`` with this client's key.

        Example::

            chat = client.openai().chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hello"}]
            )
        """
        return openai_client(self._http)

    def whoami(self) -> WhoAmI:
        """The principal and the key this client is authenticated as."""
        return WhoAmI.from_json(self._http.object("GET", "/api/v1/whoami"))

    def fit(
        self,
        spec: Mapping[str, Any] | str,
        x: ArrayLike,
        y: ArrayLike,
        *,
        epochs: int = 10,
        validation_split: float = 0.0,
        validation_data: tuple[ArrayLike, ArrayLike] | None = None,
        batch_size: int | None = 32,
        optimizer: str | Mapping[str, Any] = "adam",
        lr: float = 1e-3,
        loss: str | Mapping[str, Any] | None = None,
        dataset_name: str | None = None,
        output_model: str | None = None,
        progress: bool = False,
        **train_options: Any,
    ) -> Job:
        """Train a catalog model on NumPy arrays on the server; return the finished job.

        ``x`` and ``y`` are uploaded as an NPZ data set (arrays ``x`` and ``y``, named
        ``dataset_name`` or ``fit-<arch>-<time>-<random>``), a train job is submitted and
        waited for. ``spec`` is an architecture spec (``{"arch": "mlp", "hidden": [64]}``;
        ``input_shape`` and ``num_outputs`` default to the data's) or just an
        architecture's name. ``validation_split`` holds out that share of the rows;
        ``validation_data=(x_val, y_val)`` uploads a second data set instead. Other train
        spec fields (``schedule``, ``preprocessing``, ``early_stopping``, ``seed``, …) pass
        through ``train_options``. The new version is ``job.result["model"]`` /
        ``job.result["version"]``; the data sets stay on the server as its lineage.

        Raises :class:`JobFailedError` if training fails.

        Example::

            job = client.fit({"arch": "mlp", "hidden": [128, 64]}, x, y, epochs=20,
                             validation_split=0.2, output_model="digits-mlp", progress=True)
            print(job.result["version"], job.result["metrics"]["val"]["accuracy"])
        """
        return fit(
            self,
            spec,
            x,
            y,
            epochs=epochs,
            validation_split=validation_split,
            validation_data=validation_data,
            batch_size=batch_size,
            optimizer=optimizer,
            lr=lr,
            loss=loss,
            dataset_name=dataset_name,
            output_model=output_model,
            progress=progress,
            train_options=train_options,
        )

    def deploy(
        self,
        name: str,
        model: str | None = None,
        *,
        version: int | str = "latest",
        runtime: str | None = None,
        device: str | None = None,
        replicas: int | None = None,
        max_batch_size: int | None = None,
        max_batch_delay_ms: float | None = None,
        max_queue: int | None = None,
        timeout_ms: float | None = None,
        traffic: TrafficLike | None = None,
        pipeline: Sequence[str] | None = None,
        postprocess: Mapping[str, Any] | None = None,
        force: bool = False,
        base: str | None = None,
    ) -> Deployment:
        """Serve a model version under ``name``; returns once it is loaded and warmed up.

        ``model`` is a registered model, optionally with a version or alias after an ``@``
        (``"digits-mlp@production"``, ``"digits-mlp@3"``), or give ``version``. A deployment
        that follows an alias swaps models when the alias moves. ``traffic`` splits requests
        between versions by weight (``{1: 90, 2: 10}``: a canary); ``pipeline`` chains
        other deployments instead of serving a model, each one's output feeding the next.
        ``runtime`` is ``auto`` or an engine of the version's format (``torch`` or
        ``onnxruntime`` for a catalog version, ``torchscript``, ``torch_export``,
        ``onnxruntime`` for ONNX, ``keras``); ``device`` ``auto``, ``cpu``
        or ``cuda[:N]``; ``replicas`` how many batches are computed at once. Requests are
        batched up to ``max_batch_size`` rows, waiting at most ``max_batch_delay_ms`` for a
        batch to fill while another computes; beyond ``max_queue`` waiting requests the
        server answers 429, and one not computed within ``timeout_ms`` gets 504. Settings
        left out are not sent: the server's defaults apply, and the deployment's ``spec``
        shows them.
        ``postprocess`` adds ``{"softmax": True}`` probabilities and/or ``{"top_k": 3}``
        labels to the outputs. ``base`` names, for a LoRA adapter version, the deployment
        serving its base model version: the adapter runs on that deployment's loaded model.

        Raises :class:`ValidationError` naming the field for a spec that does not fit (an
        unknown version, a bad device, a runtime that cannot run the version's format, a
        version that does not load, pipeline stages that do not fit); nothing is deployed
        then. :class:`ConflictError` if the name is taken, or if the versions of a
        ``traffic`` split take or return different tensors (``force=True`` deploys anyway).

        Example::

            deployment = client.deploy("digits", "digits-mlp@production", max_batch_size=64)
            probabilities = deployment.predict(x_test)
        """
        return self.deployments.create(
            name,
            model,
            version=version,
            runtime=runtime,
            device=device,
            replicas=replicas,
            max_batch_size=max_batch_size,
            max_batch_delay_ms=max_batch_delay_ms,
            max_queue=max_queue,
            timeout_ms=timeout_ms,
            traffic=traffic,
            pipeline=pipeline,
            postprocess=postprocess,
            force=force,
            base=base,
        )

    def close(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"
