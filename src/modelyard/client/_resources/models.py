"""``client.models``: the model registry (models, versions, aliases, ACLs)."""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from modelyard.client._http import HTTP, seg
from modelyard.client._resources._acl import GrantLike, get_acl, set_acl
from modelyard.client._transfer import FileUpload, ProgressCallback, StrPath
from modelyard.client._types import ACL, Alias, Model, ModelVersion

_BASE = "/api/v1/models"


def _json_param(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


class Models:
    """Register models, push and pull versions, and point aliases at them."""

    def __init__(self, http: HTTP) -> None:
        self._http = http

    def _path(self, name: str, *rest: str | int) -> str:
        return "/".join([_BASE, seg(name), *(seg(r) for r in rest)])

    def create(self, name: str, task: str | None = None, description: str | None = None) -> Model:
        """Register a model name; versions are pushed to it afterwards."""
        body = {"name": name, "task": task, "description": description}
        clean = {k: v for k, v in body.items() if v is not None}
        return Model.from_json(self._http.object("POST", _BASE, json=clean))

    def list(self) -> list[Model]:
        """Every model the caller may read."""
        return [Model.from_json(m) for m in self._http.paginate(_BASE)]

    def get(self, name: str) -> Model:
        """One model, with its latest version number and aliases."""
        return Model.from_json(self._http.object("GET", self._path(name)))

    def update(
        self, name: str, *, task: str | None = None, description: str | None = None
    ) -> Model:
        """Change a model's task and/or description; ``None`` leaves a field as it is."""
        body = {
            k: v for k, v in {"task": task, "description": description}.items() if v is not None
        }
        return Model.from_json(self._http.object("PATCH", self._path(name), json=body))

    def delete(self, name: str) -> None:
        """Delete a model and all its versions."""
        self._http.send("DELETE", self._path(name))

    def push(
        self,
        name: str,
        path: StrPath,
        *,
        format: str | None = None,
        spec: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        description: str | None = None,
        parent: int | None = None,
        signature: Mapping[str, Any] | None = None,
        force: bool = False,
        progress: ProgressCallback | None = None,
    ) -> ModelVersion:
        """Upload an artifact as the model's next version; the first push of a new name
        registers the model (owned by the caller).

        ``path`` is a ``.safetensors`` file (with ``spec``, or a spec in its metadata), a
        TorchScript ``.pt``, a ``torch.export`` ``.pt2``, an ``.onnx`` file, a Keras 3
        ``.keras`` file (format ``keras``; only Keras's built-in layers are accepted), or a
        ``.tar``/``.tar.gz``/``.zip`` holding ``spec.json`` and ``model.safetensors``.
        The file is streamed; ``progress(done, total)`` follows the upload. The version
        records what the model returns, read from its last layer: ``params={"outputs":
        "probabilities"}`` (or ``"binary_probabilities"``, ``"logits"``) states it instead.

        ``signature`` describes the tensors of a format that records none (TorchScript):
        ``{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}], "outputs":
        [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]}``, -1 for a dimension
        that varies; its serving metadata and input checks come from it. A deployment that
        follows the model's ``latest`` version swaps to the new one; if that would change
        the tensors it serves the push raises :class:`ConflictError`, unless ``force=True``.

        Example::

            v = client.models.push("digits-mlp", "model.safetensors",
                                   spec={"arch": "mlp", "input_shape": [64],
                                         "hidden": [32], "num_outputs": 10},
                                   metrics={"accuracy": 0.97})
        """
        file = Path(path)
        query = {
            "format": format,
            "filename": file.name,
            "spec": _json_param(spec),
            "metrics": _json_param(metrics),
            "params": _json_param(params),
            "description": description,
            "parent": parent,
            "signature": _json_param(signature),
            "force": "true" if force else None,
        }
        answer = self._http.upload(
            self._path(name, "versions"), FileUpload(file), params=query, progress=progress
        )
        return ModelVersion.from_json(answer)

    # Inside this class `list` names the method above, hence `builtins.list`.
    def versions(self, name: str) -> builtins.list[ModelVersion]:
        """Every version of a model."""
        return [
            ModelVersion.from_json(v) for v in self._http.paginate(self._path(name, "versions"))
        ]

    def version(self, name: str, v: int | str) -> ModelVersion:
        """One version, by number or alias (``client.models.version("m", "production")``)."""
        return ModelVersion.from_json(self._http.object("GET", self._path(name, "versions", v)))

    def compare(self, name: str, v: int | str, w: int | str) -> dict[str, Any]:
        """Two versions side by side: size, weight bytes, parameters, non-zeros, latency
        (batch 1 and 32) and metric, as the compression jobs that made or used them measured.

        The answer has ``versions`` (one row each), ``delta`` (``w`` - ``v``), ``ratio``
        (``v`` / ``w``: how many times smaller or faster ``w`` is) and ``comparable`` (both
        rows measured on the same data set).

        Example::

            report = client.models.compare("digits-mlp", 1, 2)
            print(report["ratio"]["weight_bytes"], report["delta"].get("accuracy"))
        """
        return self._http.object("GET", self._path(name, "versions", v, "compare", w))

    def delete_version(self, name: str, v: int | str) -> None:
        """Delete one version."""
        self._http.send("DELETE", self._path(name, "versions", v))

    def pull(
        self,
        name: str,
        v: int | str,
        dest: StrPath = ".",
        progress: ProgressCallback | None = None,
    ) -> Path:
        """Download a version's artifact to ``dest``; return the file's path.

        When ``dest`` is a directory the file is named as the server suggests, or
        ``<name>-v<v>``. The file appears only once complete (it is written to ``.part``).
        """
        fallback = f"{name}-v{v}" if isinstance(v, int) else f"{name}-{v}"
        path = self._path(name, "versions", v, "download")
        return self._http.download(path, Path(dest), fallback, progress)

    def aliases(self, name: str) -> dict[str, int]:
        """The model's aliases, ``{alias: version}``."""
        body = self._http.object("GET", self._path(name, "aliases"))
        return {str(k): int(v) for k, v in body.items()}

    def set_alias(self, name: str, alias: str, version: int, *, force: bool = False) -> Alias:
        """Point ``alias`` at ``version`` (creating or moving it).

        Deployments that follow the alias swap to ``version`` before this returns; if that
        would change the tensors one of them serves, :class:`ConflictError` names the
        difference and the alias stays, unless ``force=True``.
        """
        payload: dict[str, Any] = {"version": version}
        if force:
            payload["force"] = True
        body = self._http.object("PUT", self._path(name, "aliases", alias), json=payload)
        return Alias.from_json(body)

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove an alias; the version it pointed to stays."""
        self._http.send("DELETE", self._path(name, "aliases", alias))

    def get_acl(self, name: str) -> ACL:
        """Who besides the owner may use the model."""
        return get_acl(self._http, self._path(name, "acl"))

    def set_acl(self, name: str, public: bool = False, grants: Iterable[GrantLike] = ()) -> ACL:
        """Replace the model's ACL (``public`` lets every principal read it)."""
        return set_acl(self._http, self._path(name, "acl"), public, grants)
