"""Deployments as records: create, change, list, delete, with access rules.

Loading models and answering requests is the manager's job (:mod:`modelyard.serving.manager`);
this service checks and stores what should be served.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from modelyard.auth.access import Caller, Permission, Scope, ensure_access, visible_clause
from modelyard.auth.acl import ResourceAcl
from modelyard.auth.audit import record
from modelyard.auth.cache import AnswerCache
from modelyard.db.engine import Database
from modelyard.db.tables import Deployment, ModelVersion
from modelyard.errors import Conflict, InvalidInput, ModelyardError, NotFound
from modelyard.naming import check_name
from modelyard.registry.formats.lora import LORA_FORMAT
from modelyard.registry.service import ModelRegistry
from modelyard.serving.spec import DeploymentSpec, check_runtime, parse_deployment_spec

RESOURCE = "deployment"


class DeploymentService:
    """Owns the ``deployments`` table."""

    def __init__(self, db: Database, registry: ModelRegistry, cache_ttl_s: float = 5.0) -> None:
        self._db = db
        self._registry = registry
        # Inference checks access on every request; remember recent answers briefly, per key:
        # another key of the same principal may lack the 'infer' scope.
        self._allowed: AnswerCache[tuple[str, str], bool] = AnswerCache(cache_ttl_s)
        self.acl = ResourceAcl(db, RESOURCE, Deployment, self.get, on_change=self._forget_access)
        """Who besides its owner may use a deployment."""

    def may_infer_cached(self, caller: Caller, name: str) -> bool:
        """True if this caller was recently allowed to call this deployment; False when it
        must :meth:`check_infer` (also, once, when the answer is due for renewal)."""
        return self._allowed.get((caller.key_id, name)) is not None

    def check_infer(self, caller: Caller, name: str) -> None:
        """Raise unless the caller may call the deployment (404 if it may not see it)."""
        key = (caller.key_id, name)
        try:
            caller.require(Scope.INFER)
            self.check(caller, name, Permission.READ)
        except ModelyardError:
            self._allowed.drop(key)
            raise
        self._allowed.put(key, True)

    def _forget_access(self, name: str) -> None:
        self._allowed.drop_where(lambda key, _allowed: key[1] == name)

    def _check_sources(self, caller: Caller, name: str, spec: DeploymentSpec) -> None:
        """The caller must be able to read what it deploys, every version must exist, and
        the runtime asked for must be able to run each version's format."""
        if spec.model is not None:
            for ref in spec.versions_wanted():
                try:
                    version = self._registry.get_version(caller, spec.model, ref)
                except NotFound as exc:
                    raise InvalidInput(f"model: {exc.detail}", field="model") from exc
                check_runtime(
                    spec.runtime, version.format, f"version {version.version} of '{spec.model}'"
                )
                _check_base(spec, version)
        for index, stage in enumerate(spec.pipeline or []):
            if stage == name:
                raise InvalidInput(f"pipeline[{index}]: a pipeline cannot contain itself")
            try:
                self.get(caller, stage)
            except NotFound as exc:
                raise InvalidInput(f"pipeline[{index}]: {exc.detail}") from exc
        if spec.base is not None:
            if spec.base == name:
                raise InvalidInput("base: an adapter cannot run on itself", field="base")
            try:
                self.get(caller, spec.base)
            except NotFound as exc:
                raise InvalidInput(f"base: {exc.detail}", field="base") from exc

    def prepare_create(self, caller: Caller, name: str, raw: dict[str, Any]) -> DeploymentSpec:
        """The checked spec of a new deployment ``name`` (nothing is stored yet)."""
        caller.require(Scope.WRITE)
        check_name(name, "deployment name")
        spec = parse_deployment_spec(raw)
        with self._db.session() as session:
            if session.scalar(select(Deployment.id).where(Deployment.name == name)):
                raise Conflict(f"a deployment named '{name}' already exists")
        self._check_sources(caller, name, spec)
        return spec

    def store_create(self, caller: Caller, name: str, spec: DeploymentSpec) -> Deployment:
        """Store a deployment checked by :meth:`prepare_create`."""
        with self._db.session() as session:
            row = Deployment(
                name=name,
                owner_id=caller.principal_id,
                project_id=caller.project_id,
                spec=spec.model_dump(mode="json"),
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError as exc:
                raise Conflict(f"a deployment named '{name}' already exists") from exc
            record(session, caller, "deployment.create", f"deployment:{name}")
            session.refresh(row)
            return row

    def create(self, caller: Caller, name: str, raw: dict[str, Any]) -> Deployment:
        """Check and store a deployment; the servers load it when they next reconcile."""
        return self.store_create(caller, name, self.prepare_create(caller, name, raw))

    def prepare_update(
        self, caller: Caller, name: str, changes: dict[str, Any]
    ) -> tuple[Deployment, DeploymentSpec]:
        """The deployment and its spec with ``changes`` applied, checked (nothing stored)."""
        row = self.get(caller, name, Permission.WRITE)
        merged = {**row.spec, **changes}
        if "pipeline" in changes and changes["pipeline"] is not None:
            merged["model"] = None
        if "model" in changes and changes["model"] is not None:
            merged["pipeline"] = None
        spec = parse_deployment_spec(merged)
        self._check_sources(caller, name, spec)
        return row, spec

    def store_update(
        self, caller: Caller, row: Deployment, spec: DeploymentSpec, changes: dict[str, Any]
    ) -> Deployment:
        """Store a spec checked by :meth:`prepare_update`."""
        with self._db.session() as session:
            stored = session.get(Deployment, row.id)
            if stored is None:
                raise NotFound(f"no deployment named '{row.name}'")
            stored.spec = spec.model_dump(mode="json")
            stored.updated_at = datetime.now(UTC)
            record(session, caller, "deployment.update", f"deployment:{row.name}", changes)
            return stored

    def update(self, caller: Caller, name: str, changes: dict[str, Any]) -> Deployment:
        """Change some fields of a deployment's spec (e.g. its version: a hot swap)."""
        row, spec = self.prepare_update(caller, name, changes)
        return self.store_update(caller, row, spec, changes)

    def accept(self, caller: Caller, names: Sequence[str], ref: str, version: int) -> None:
        """Record on deployments ``names``, which follow ``ref``, that ``caller`` forced
        ``ref`` to ``version`` although its tensors differ: every server then swaps to it
        (see ``DeploymentSpec.accepted``). The caller's right to move ``ref`` was checked."""
        with self._db.session() as session:
            for row in session.scalars(select(Deployment).where(Deployment.name.in_(names))):
                spec = DeploymentSpec.model_validate(row.spec)
                accepted = {**spec.accepted, ref: version}
                row.spec = spec.model_copy(update={"accepted": accepted}).model_dump(mode="json")
                row.updated_at = datetime.now(UTC)
                record(
                    session,
                    caller,
                    "deployment.accept",
                    f"deployment:{row.name}",
                    {ref: version},
                )

    def delete(self, caller: Caller, name: str) -> None:
        row = self.get(caller, name, Permission.WRITE)
        with self._db.session() as session:
            session.delete(session.get_one(Deployment, row.id))
            record(session, caller, "deployment.delete", f"deployment:{name}")
        self._forget_access(name)

    def get(
        self, caller: Caller, name: str, permission: Permission = Permission.READ
    ) -> Deployment:
        caller.require(Scope.WRITE if permission is Permission.WRITE else Scope.READ)
        return self.check(caller, name, permission)

    def check(self, caller: Caller, name: str, permission: Permission) -> Deployment:
        """The deployment if the caller may use it (no scope check: callers of inference
        hold the ``infer`` scope, checked by the interface)."""
        with self._db.session() as session:
            row = session.scalar(select(Deployment).where(Deployment.name == name))
            if row is None:
                raise NotFound(f"no deployment named '{name}'")
            ensure_access(session, caller, RESOURCE, row, permission, f"deployment named '{name}'")
            return row

    def list_deployments(
        self, caller: Caller, limit: int, offset: int, search: str | None = None
    ) -> tuple[Sequence[Deployment], int]:
        """A page of the deployments ``caller`` may read (named with ``search``, if given)."""
        caller.require(Scope.READ)
        where = visible_clause(
            caller,
            RESOURCE,
            Deployment.id,
            Deployment.owner_id,
            Deployment.public,
            Deployment.project_id,
        )
        if search:
            where = where & Deployment.name.contains(search, autoescape=True)
        with self._db.session() as session:
            total = session.scalar(select(func.count()).select_from(Deployment).where(where))
            rows = session.scalars(
                select(Deployment)
                .where(where)
                .order_by(Deployment.created_at)
                .limit(limit)
                .offset(offset)
            ).all()
            return rows, total or 0

    def visible_names(self, caller: Caller | None) -> set[str]:
        """Names of the deployments ``caller`` may read (without a caller: the public ones)."""
        where = (
            Deployment.public.is_(True)
            if caller is None
            else visible_clause(
                caller,
                RESOURCE,
                Deployment.id,
                Deployment.owner_id,
                Deployment.public,
                Deployment.project_id,
            )
        )
        with self._db.session() as session:
            return set(session.scalars(select(Deployment.name).where(where)))

    def all(self) -> list[Deployment]:
        """Every deployment (for the manager, which serves them all)."""
        with self._db.session() as session:
            return list(session.scalars(select(Deployment)))


def _check_base(spec: DeploymentSpec, version: ModelVersion) -> None:
    """A LoRA adapter version needs ``base`` (the deployment it runs on); nothing else takes one."""
    where = f"version {version.version} of '{spec.model}'"
    if version.format == LORA_FORMAT and spec.base is None:
        raise InvalidInput(
            f"base: {where} is a LoRA adapter; name the deployment of its base model "
            "(the version it was trained on) in 'base'",
            field="base",
        )
    if version.format != LORA_FORMAT and spec.base is not None:
        raise InvalidInput(
            f"base: {where} is not a LoRA adapter (format {version.format!r}); only adapters "
            "run on another deployment",
            field="base",
        )
