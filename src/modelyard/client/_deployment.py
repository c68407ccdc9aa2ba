"""The :class:`Deployment` handle: a deployment's last known state, and predictions on it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from modelyard.client._types import JSONObject, Owner, ServedVersion, _created, _dt, _owner

if TYPE_CHECKING:
    import numpy.typing as npt

    from modelyard.client._explain import Explanation
    from modelyard.client._resources.deployments import Deployments


class Deployment:
    """A model served under a name: ``client.deploy(...)`` makes one, ``predict`` uses it.

    The attributes are the deployment's state when last fetched (``status`` is ``loading``,
    ``ready`` or ``failed``; ``versions`` are the model versions it serves with their
    traffic weights and tensors); :meth:`refresh` fetches it again.

    Example::

        deployment = client.deploy("digits", "digits-mlp@production")
        labels = deployment.predict(x_test).argmax(axis=1)
        deployment.update(version=3)  # hot swap: v3 is warmed up before traffic moves
    """

    id: str
    name: str
    spec: JSONObject
    status: str
    error: str | None
    versions: tuple[ServedVersion, ...]
    owner: Owner | None
    public: bool
    created_at: datetime
    updated_at: datetime | None
    raw: JSONObject

    def __init__(self, deployments: Deployments, data: Mapping[str, Any]) -> None:
        self._deployments = deployments
        self._load(data)

    def _load(self, data: Mapping[str, Any]) -> None:
        self.id = str(data["id"])
        self.name = str(data["name"])
        self.spec = dict(data.get("spec") or {})
        self.status = str(data.get("status") or "")
        self.error = data.get("error")
        self.versions = tuple(ServedVersion.from_json(v) for v in data.get("versions") or ())
        self.owner = _owner(data.get("owner"))
        self.public = bool(data.get("public", False))
        self.created_at = _created(data)
        self.updated_at = _dt(data.get("updated_at"))
        self.raw = dict(data)

    @property
    def model(self) -> str | None:
        """The registered model it serves (``None`` for a pipeline)."""
        model = self.spec.get("model")
        return None if model is None else str(model)

    @property
    def pipeline(self) -> list[str] | None:
        """The deployments it chains, first to last (``None`` unless it is a pipeline)."""
        stages = self.spec.get("pipeline")
        return None if stages is None else [str(s) for s in stages]

    @property
    def ready(self) -> bool:
        """Whether it was serving when last fetched."""
        return self.status == "ready"

    def predict(
        self,
        x: npt.ArrayLike | Mapping[str, npt.ArrayLike],
        *,
        version: int | str | None = None,
        binary: bool | None = None,
    ) -> npt.NDArray[Any] | dict[str, npt.NDArray[Any]]:
        """Run inputs through the deployment; NumPy in, NumPy out (needs numpy).

        ``x`` is one array (a batch, first dimension the rows) for a model with one input,
        or a dict of arrays by input name. One array in gives the output as an array, or a
        dict by name when there are several (postprocessing adds ``probabilities``,
        ``top_k_indices``, …); a dict in always gives a dict. ``version`` pins one of the
        versions a canary split serves. Inputs over 64 KiB travel as binary tensors
        through the Open Inference Protocol; ``binary`` forces that way on or off.

        Raises :class:`ValidationError` naming the tensor for inputs that do not fit the
        model, and :class:`RateLimitError` (with ``retry_after``) when its queue is full.

        Example::

            logits = client.deployments.get("digits").predict(x_test)
            accuracy = (logits.argmax(axis=1) == y_test).mean()
        """
        # numpy loads only when a client predicts (importing the SDK stays light).
        from modelyard.client._inference import predict

        return predict(
            self._deployments._http,
            self.name,
            self.versions,
            x,
            version=version,
            binary=binary,
        )

    def explain(
        self,
        x: npt.ArrayLike | Mapping[str, npt.ArrayLike],
        *,
        method: str = "integrated_gradients",
        target: int | list[int] | None = None,
        baseline: Any = None,
        version: int | str | None = None,
        **options: Any,
    ) -> Explanation:
        """Attributions of the model's output score to every value of ``x`` (needs numpy).

        ``method`` is ``integrated_gradients`` or ``saliency`` (versions running on torch:
        gradients through the model) or ``occlusion`` or ``kernel_shap`` (any runtime: the
        model's own forward). ``target`` is the output column (class index) explained, one
        for all rows or one per row; default each row's predicted class. ``baseline`` is the
        reference input (a number, a row or the inputs' shape; default zeros). ``options``
        bound the effort: ``n_steps`` (integrated gradients), ``n_samples`` (Kernel SHAP),
        ``window`` and ``stride`` (occlusion), ``output`` (which output of several), ``seed``.

        Raises :class:`ValidationError` naming the field for a method the deployment cannot
        run or a request over the server's bounds.

        Example::

            e = client.deployments.get("digits").explain(x_test[:4], n_steps=128)
            heat = e.attributions.reshape(-1, 8, 8)  # which pixels made each prediction
            print(e.target, e.convergence_delta)
        """
        # numpy loads only when a client explains (importing the SDK stays light).
        from modelyard.client._explain import explain

        return explain(
            self._deployments._http,
            self.name,
            x,
            method=method,
            target=target,
            baseline=baseline,
            version=version,
            options=options,
        )

    def refresh(self) -> Deployment:
        """Fetch the deployment's current state into this handle; returns it."""
        self._load(self._deployments.get(self.name).raw)
        return self

    def update(self, **changes: Any) -> Deployment:
        """Change spec fields (see :meth:`Deployments.update`); returns the updated handle."""
        self._load(self._deployments.update(self.name, **changes).raw)
        return self

    def delete(self) -> None:
        """Stop serving and remove the deployment."""
        self._deployments.delete(self.name)

    def __repr__(self) -> str:
        served = ", ".join(f"v{v.version}" for v in self.versions) or "-"
        return f"Deployment(name={self.name!r}, status={self.status!r}, versions=[{served}])"
