"""What the API answers, as small frozen dataclasses.

Each type has the fields of ``docs/api.md`` and keeps the whole JSON object it was built
from in ``raw``, so fields a newer server adds are still reachable (and printable) without
an SDK upgrade. Optional fields the server leaves out read as ``None`` or empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

JSONObject = dict[str, Any]

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
"""The statuses a job never leaves."""


def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _created(data: Mapping[str, Any]) -> datetime:
    value = _dt(data.get("created_at"))
    if value is None:
        raise KeyError("created_at")
    return value


def _ref_name(value: Any) -> str | None:
    """A reference the server may give as a bare name/id or as ``{"id", "name"}``."""
    if isinstance(value, Mapping):
        ref = value.get("name") or value.get("id")
        return None if ref is None else str(ref)
    return None if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True, kw_only=True)
class Owner:
    """A reference to a principal: its ``id`` and ``name``."""

    id: str
    name: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Owner:
        """Build from ``{"id", "name"}``."""
        return cls(id=str(data["id"]), name=str(data["name"]))


def _owner(value: Any) -> Owner | None:
    return Owner.from_json(value) if isinstance(value, Mapping) else None


@dataclass(frozen=True, kw_only=True)
class Principal:
    """A user or service account that owns keys and resources."""

    id: str
    name: str
    kind: str
    is_admin: bool
    created_at: datetime
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Principal:
        """Build from the API's Principal object."""
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            kind=str(data.get("kind") or "user"),
            is_admin=bool(data.get("is_admin", False)),
            created_at=_created(data),
            raw=dict(data),
        )


@dataclass(frozen=True, kw_only=True)
class Key:
    """An API key's metadata; the secret itself is only in :class:`CreatedKey`."""

    id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    principal: Owner | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def _fields(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": str(data["id"]),
            "name": str(data["name"]),
            "prefix": str(data.get("prefix") or ""),
            "scopes": tuple(str(s) for s in data.get("scopes") or ()),
            "principal": _owner(data.get("principal")),
            "expires_at": _dt(data.get("expires_at")),
            "revoked_at": _dt(data.get("revoked_at")),
            "last_used_at": _dt(data.get("last_used_at")),
            "created_at": _created(data),
            "raw": dict(data),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Key:
        """Build from the API's Key object."""
        return cls(**cls._fields(data))


@dataclass(frozen=True, kw_only=True)
class CreatedKey(Key):
    """A key just created: ``key`` is the secret, which the server shows only this once."""

    key: str = field(repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CreatedKey:
        """Build from the answer to ``POST /api/v1/keys``."""
        return cls(**cls._fields(data), key=str(data["key"]))


@dataclass(frozen=True, kw_only=True)
class WhoAmI:
    """The principal and the key a request was authenticated as."""

    principal: Principal
    key: Key
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WhoAmI:
        """Build from the answer to ``GET /api/v1/whoami``."""
        return cls(
            principal=Principal.from_json(data["principal"]),
            key=Key.from_json(data["key"]),
            raw=dict(data),
        )


@dataclass(frozen=True, kw_only=True)
class Grant:
    """One ACL entry: ``principal`` (a name) may ``read`` or ``write`` the resource."""

    principal: str
    permission: str = "read"

    def to_json(self) -> JSONObject:
        """The wire form, ``{"principal", "permission"}``."""
        return {"principal": self.principal, "permission": self.permission}


@dataclass(frozen=True, kw_only=True)
class ACL:
    """Who besides the owner may use a resource."""

    public: bool
    grants: tuple[Grant, ...]
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ACL:
        """Build from the API's ACL object."""
        grants = tuple(
            Grant(principal=_ref_name(g["principal"]) or "", permission=str(g["permission"]))
            for g in data.get("grants") or ()
        )
        return cls(public=bool(data.get("public", False)), grants=grants, raw=dict(data))


@dataclass(frozen=True, kw_only=True)
class Dataset:
    """A data set: a table (``schema["columns"]``) or named arrays (``schema["arrays"]``)."""

    id: str
    name: str
    description: str | None
    format: str
    kind: str
    schema: JSONObject
    num_rows: int | None
    label: str | None
    sha256: str
    size: int
    owner: Owner | None
    created_at: datetime
    public: bool
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Dataset:
        """Build from the API's Dataset object."""
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            description=data.get("description"),
            format=str(data.get("format") or ""),
            kind=str(data.get("kind") or ""),
            schema=dict(data.get("schema") or {}),
            num_rows=_opt_int(data.get("num_rows")),
            label=data.get("label"),
            sha256=str(data.get("sha256") or ""),
            size=int(data.get("size") or 0),
            owner=_owner(data.get("owner")),
            created_at=_created(data),
            public=bool(data.get("public", False)),
            raw=dict(data),
        )


@dataclass(frozen=True, kw_only=True)
class Model:
    """A registered model: a name whose versions hold the artifacts."""

    id: str
    name: str
    task: str | None
    description: str | None
    owner: Owner | None
    created_at: datetime
    latest_version: int | None
    aliases: dict[str, int]
    public: bool
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Model:
        """Build from the API's Model object."""
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            task=data.get("task"),
            description=data.get("description"),
            owner=_owner(data.get("owner")),
            created_at=_created(data),
            latest_version=_opt_int(data.get("latest_version")),
            aliases={str(k): int(v) for k, v in (data.get("aliases") or {}).items()},
            public=bool(data.get("public", False)),
            raw=dict(data),
        )


@dataclass(frozen=True, kw_only=True)
class Lineage:
    """Where a version came from: the data set, the job and the parent version, if any
    (``parent_model`` names the parent's model, this one unless it is another)."""

    dataset: str | None = None
    job: str | None = None
    parent_version: int | None = None
    parent_model: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Lineage:
        """Build from the ``lineage`` object of a Version (``None`` reads as empty)."""
        data = data or {}
        return cls(
            dataset=_ref_name(data.get("dataset")),
            job=_ref_name(data.get("job")),
            parent_version=_opt_int(data.get("parent_version")),
            parent_model=data.get("parent_model"),
        )


@dataclass(frozen=True, kw_only=True)
class ModelVersion:
    """One immutable artifact of a model, with its spec, signature, metrics and lineage."""

    id: str
    model: str
    version: int
    format: str
    sha256: str
    size: int
    spec: JSONObject | None
    signature: JSONObject | None
    metrics: JSONObject
    params: JSONObject
    description: str | None
    lineage: Lineage
    created_by: Owner | None
    created_at: datetime
    privacy: JSONObject | None = None
    """A privately trained version's guarantee: ``epsilon``, ``delta``, ``noise_multiplier``,
    ``max_grad_norm``, ``accountant`` (None for other versions)."""
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelVersion:
        """Build from the API's Version object."""
        return cls(
            id=str(data["id"]),
            model=_ref_name(data.get("model")) or "",
            version=int(data["version"]),
            format=str(data.get("format") or ""),
            sha256=str(data.get("sha256") or ""),
            size=int(data.get("size") or 0),
            spec=data.get("spec"),
            signature=data.get("signature"),
            metrics=dict(data.get("metrics") or {}),
            params=dict(data.get("params") or {}),
            description=data.get("description"),
            lineage=Lineage.from_json(data.get("lineage")),
            created_by=_owner(data.get("created_by")),
            created_at=_created(data),
            privacy=_privacy(data),
            raw=dict(data),
        )


def _privacy(data: Mapping[str, Any]) -> JSONObject | None:
    block = data.get("privacy") or (data.get("params") or {}).get("privacy")
    return dict(block) if isinstance(block, Mapping) else None


@dataclass(frozen=True, kw_only=True)
class Alias:
    """A named pointer (``production``, ``staging``) to one version of a model."""

    alias: str
    version: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Alias:
        """Build from ``{"alias", "version"}``."""
        return cls(alias=str(data["alias"]), version=int(data["version"]))


@dataclass(frozen=True, kw_only=True)
class JobEvent:
    """One entry of a job's event log, numbered ``seq`` = 1, 2, 3… in order.

    ``type`` is ``status``, ``step``, ``epoch``, ``checkpoint``, ``resumed``, ``log`` or
    ``result``; ``data`` holds its fields, e.g. ``{"epoch", "step", "loss", "lr"}`` for a
    ``step``.
    """

    seq: int
    at: datetime | None
    type: str
    data: JSONObject
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @property
    def ends_job(self) -> bool:
        """Whether this is the ``status`` event of a finished job."""
        return self.type == "status" and self.data.get("status") in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobEvent:
        """Build from the API's Event object ``{seq, at, type, data}``."""
        return cls(
            seq=int(data["seq"]),
            at=_dt(data.get("at")),
            type=str(data.get("type") or ""),
            data=dict(data.get("data") or {}),
            raw=dict(data),
        )

    @classmethod
    def from_stream(cls, seq: int, type_: str, payload: Mapping[str, Any]) -> JobEvent:
        """Build from a streamed message: its ``id``, ``event`` and decoded ``data``.

        The stream sends the event's fields with ``seq`` and ``at`` beside them; a whole
        Event object (``{seq, at, type, data}``) is understood too.
        """
        if isinstance(payload.get("data"), Mapping) and "type" in payload and "seq" in payload:
            return cls.from_json(payload)
        fields = {k: v for k, v in payload.items() if k not in ("seq", "at")}
        raw = {"seq": seq, "at": payload.get("at"), "type": type_, "data": fields}
        return cls(seq=seq, at=_dt(payload.get("at")), type=type_, data=fields, raw=raw)


@dataclass(frozen=True, kw_only=True)
class TensorInfo:
    """One input or output of a served model, in Open Inference Protocol terms.

    ``datatype`` is e.g. ``FP32`` or ``INT64``; ``shape`` has -1 for a dimension that varies
    (the first is the batch). Either is ``None`` where the model format records none.
    """

    name: str
    datatype: str | None
    shape: tuple[int, ...] | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TensorInfo:
        """Build from ``{"name", "datatype", "shape"}``."""
        shape = data.get("shape")
        return cls(
            name=str(data["name"]),
            datatype=data.get("datatype") or None,
            shape=None if shape is None else tuple(int(d) for d in shape),
        )


@dataclass(frozen=True, kw_only=True)
class ServedVersion:
    """A model version a deployment serves: its share of the traffic, runtime and tensors."""

    version: int
    weight: float
    runtime: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServedVersion:
        """Build from an entry of a Deployment's ``versions``."""
        return cls(
            version=int(data["version"]),
            weight=float(data.get("weight", 1.0)),
            runtime=str(data.get("runtime") or ""),
            inputs=tuple(TensorInfo.from_json(t) for t in data.get("inputs") or ()),
            outputs=tuple(TensorInfo.from_json(t) for t in data.get("outputs") or ()),
        )
