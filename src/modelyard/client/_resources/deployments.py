"""``client.deployments``: serve model versions under a name, change them, share them."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

from modelyard.client._deployment import Deployment
from modelyard.client._http import HTTP, seg
from modelyard.client._resources._acl import GrantLike, get_acl, set_acl
from modelyard.client._types import ACL

_BASE = "/api/v1/deployments"

TrafficLike: TypeAlias = (
    Mapping[int | str, float] | Iterable[tuple[int | str, float] | Mapping[str, Any]]
)
"""A canary split: ``{1: 90, 2: 10}``, ``[(1, 90), (2, 10)]`` or the wire form
``[{"version": "1", "weight": 90}, ...]``; versions are numbers or aliases."""


class Deployments:
    """Create, list, inspect, change (hot swap), delete and share deployments."""

    def __init__(self, http: HTTP) -> None:
        self._http = http

    def _path(self, name: str, *rest: str) -> str:
        return "/".join([_BASE, seg(name), *rest])

    def create(
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
        """Deploy a model version (or a pipeline of deployments); see :meth:`Client.deploy`.

        Only the settings given are sent; the server's defaults apply to the rest."""
        if (model is None) == (pipeline is None):
            raise ValueError("deploy either a model (model='name') or a pipeline (pipeline=[...])")
        body: dict[str, Any] = {"name": name}
        if model is not None:
            body["model"], body["version"] = split_model_ref(model, version)
        else:
            body["pipeline"] = _stages(pipeline)
        if traffic is not None:
            body["traffic"] = traffic_entries(traffic)
        settings = {
            "runtime": runtime,
            "device": device,
            "replicas": replicas,
            "max_batch_size": max_batch_size,
            "max_batch_delay_ms": max_batch_delay_ms,
            "max_queue": max_queue,
            "timeout_ms": timeout_ms,
        }
        body.update({key: value for key, value in settings.items() if value is not None})
        if postprocess is not None:
            body["postprocess"] = dict(postprocess)
        if base is not None:
            body["base"] = base
        if force:
            body["force"] = True
        return Deployment(self, self._http.object("POST", _BASE, json=body))

    def list(self) -> builtins.list[Deployment]:
        """Every deployment the caller may read."""
        return [Deployment(self, d) for d in self._http.paginate(_BASE)]

    def get(self, name: str) -> Deployment:
        """One deployment, with the versions it serves right now."""
        return Deployment(self, self._http.object("GET", self._path(name)))

    def update(self, name: str, *, force: bool = False, **changes: Any) -> Deployment:
        """Change some spec fields; the server swaps in the result before answering.

        Any field of :meth:`Client.deploy` may change. ``version`` takes a number or an
        alias, ``model`` the ``"name@alias"`` shorthand; ``traffic=None`` ends a canary
        split. A new version is loaded and warmed up before requests move to it.

        A change that does not load raises :class:`ValidationError` and the deployment goes
        on as it was. A swap to versions that take or return other tensors than the
        deployment serves (renamed, retyped or reshaped: every running client would break)
        raises :class:`ConflictError` naming the difference, unless ``force=True``; with
        no other change, ``force=True`` also takes a version that an alias moved to but
        that was held back for that reason.

        Example::

            client.deployments.update("digits", version=3)
            client.deployments.update("digits", traffic={2: 90, 3: 10})
            client.deployments.update("digits", version=4, force=True)
        """
        if not changes and not force:
            raise ValueError("update needs a change, e.g. version=2")
        body = dict(changes)
        if isinstance(body.get("model"), str) and "@" in body["model"]:
            body["model"], body["version"] = split_model_ref(body["model"], body.get("version"))
        if body.get("version") is not None:
            body["version"] = str(body["version"])
        if body.get("traffic") is not None:
            body["traffic"] = traffic_entries(body["traffic"])
        if body.get("pipeline") is not None:
            body["pipeline"] = _stages(body["pipeline"])
        if force:
            body["force"] = True
        return Deployment(self, self._http.object("PATCH", self._path(name), json=body))

    def delete(self, name: str) -> None:
        """Stop serving and remove a deployment (the model and its versions stay)."""
        self._http.send("DELETE", self._path(name))

    def get_acl(self, name: str) -> ACL:
        """Who besides the owner may use the deployment."""
        return get_acl(self._http, self._path(name, "acl"))

    def set_acl(self, name: str, public: bool = False, grants: Iterable[GrantLike] = ()) -> ACL:
        """Replace the deployment's ACL; ``read`` lets a principal with an ``infer`` key call it."""
        return set_acl(self._http, self._path(name, "acl"), public, grants)


def split_model_ref(model: str, version: int | str | None = None) -> tuple[str, str]:
    """``"digits@production"`` → ``("digits", "production")``; without ``@``, ``version``.

    ``version`` defaults to ``latest``; one given besides an ``@`` must agree with it.
    """
    name, sep, ref = model.partition("@")
    if not sep:
        return model, "latest" if version is None else str(version)
    if not name or not ref:
        raise ValueError(f"{model!r}: expected a model name, or name@version / name@alias")
    if version not in (None, "latest") and str(version) != ref:
        raise ValueError(f"{model!r} names version {ref!r}, but version={version!r} was given")
    return name, ref


def traffic_entries(traffic: TrafficLike) -> builtins.list[dict[str, Any]]:
    """A canary split in its wire form, ``[{"version": "1", "weight": 90.0}, ...]``."""
    if isinstance(traffic, Mapping):
        pairs = [(version, weight) for version, weight in traffic.items()]
    else:
        pairs = [
            (entry["version"], entry["weight"]) if isinstance(entry, Mapping) else entry
            for entry in traffic
        ]
    return [{"version": str(version), "weight": float(weight)} for version, weight in pairs]


def _stages(pipeline: Sequence[str] | str | None) -> builtins.list[str]:
    # A bare string is a sequence too; "a,b" names two stages, not three letters.
    if isinstance(pipeline, str):
        return [stage.strip() for stage in pipeline.split(",") if stage.strip()]
    return [str(stage) for stage in pipeline or ()]
