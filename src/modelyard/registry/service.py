"""The model registry: models, immutable versions, movable aliases, access rules."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.auth.access import Caller, Permission, Scope, ensure_access, visible_clause
from modelyard.auth.acl import ResourceAcl
from modelyard.auth.audit import record
from modelyard.db.engine import Database
from modelyard.db.tables import Alias, Model, ModelVersion
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.naming import MAX_VERSION, check_name, version_number
from modelyard.registry.artifacts import inspect_artifact
from modelyard.registry.signature import with_declared
from modelyard.registry.specs import spec_checker_for
from modelyard.runtimes.outputs import OUTPUTS_PARAM
from modelyard.storage.base import DOWNLOAD_CHUNK_SIZE, BlobStore
from modelyard.storage.refs import add_refs, delete_unreferenced, drop_refs
from modelyard.storage.staging import StagedFile, scratch_dir

RESOURCE = "model"
VERSION_REF = "version"


@dataclass
class VersionMeta:
    """What the uploader tells about a version besides its bytes."""

    format: str | None = None
    spec: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    parent_version: int | None = None
    parent_model: str | None = None  # the parent version's model, when it is another one
    dataset_id: str | None = None
    job_id: str | None = None
    signature: dict[str, Any] | None = None
    """Tensors the uploader describes, for a format that records none (TorchScript)."""


@dataclass(frozen=True)
class Candidate:
    """A checked artifact about to become a model's next version (for :data:`PushCheck`)."""

    model: str
    format: str
    signature: dict[str, Any] | None
    spec: dict[str, Any] | None
    params: dict[str, Any]


PushCheck = Callable[[Candidate], None]
"""Called with a checked artifact before it is registered; raising refuses the push."""


class ModelRegistry:
    """Owns the ``models``, ``model_versions`` and ``aliases`` tables."""

    def __init__(self, db: Database, blobs: BlobStore, tmp_dir: Path, max_unpacked: int) -> None:
        self._db = db
        self._blobs = blobs
        self._tmp = tmp_dir
        self._max_unpacked = max_unpacked
        self.acl = ResourceAcl(db, RESOURCE, Model, self.get_model)
        """Who besides its owner may use a model."""

    # -- models ----------------------------------------------------------------------
    def create_model(
        self, caller: Caller, name: str, task: str | None = None, description: str = ""
    ) -> Model:
        caller.require(Scope.WRITE)
        check_name(name, "model name")
        with self._db.session() as session:
            row = Model(
                name=name,
                task=task,
                description=description,
                owner_id=caller.principal_id,
                project_id=caller.project_id,
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError as exc:
                raise Conflict(f"a model named '{name}' already exists") from exc
            record(session, caller, "model.create", f"model:{name}")
            session.refresh(row)
            return row

    def list_models(
        self, caller: Caller, limit: int, offset: int, search: str | None = None
    ) -> tuple[Sequence[Model], int]:
        """A page of the models ``caller`` may read (named with ``search``, if given)."""
        caller.require(Scope.READ)
        where = visible_clause(
            caller, RESOURCE, Model.id, Model.owner_id, Model.public, Model.project_id
        )
        if search:
            where = where & Model.name.contains(search, autoescape=True)
        with self._db.session() as session:
            total = session.scalar(select(func.count()).select_from(Model).where(where)) or 0
            rows = session.scalars(
                select(Model)
                .where(where)
                .order_by(Model.created_at, Model.name)
                .limit(limit)
                .offset(offset)
            ).all()
            return rows, total

    def get_model(
        self, caller: Caller, name: str, permission: Permission = Permission.READ
    ) -> Model:
        caller.require(Scope.READ if permission is Permission.READ else Scope.WRITE)
        with self._db.session() as session:
            return self._model(session, caller, name, permission)

    def _model(self, session: Session, caller: Caller, name: str, permission: Permission) -> Model:
        row = session.scalar(select(Model).where(Model.name == name))
        if row is None:
            raise NotFound(f"no model named '{name}'")
        ensure_access(session, caller, RESOURCE, row, permission, f"model named '{name}'")
        return row

    def update_model(
        self, caller: Caller, name: str, task: str | None = None, description: str | None = None
    ) -> Model:
        caller.require(Scope.WRITE)
        with self._db.session() as session:
            row = self._model(session, caller, name, Permission.WRITE)
            if task is not None:
                row.task = task
            if description is not None:
                row.description = description
            record(session, caller, "model.update", f"model:{name}")
            return row

    def delete_model(self, caller: Caller, name: str) -> None:
        caller.require(Scope.WRITE)
        with self._db.session() as session:
            row = self._model(session, caller, name, Permission.WRITE)
            hashes: list[str] = []
            for version in session.scalars(
                select(ModelVersion).where(ModelVersion.model_id == row.id)
            ):
                hashes += drop_refs(session, VERSION_REF, version.id)
                session.delete(version)
            for alias in session.scalars(select(Alias).where(Alias.model_id == row.id)):
                session.delete(alias)
            session.delete(row)
            record(session, caller, "model.delete", f"model:{name}")
            session.flush()
            delete_unreferenced(session, self._blobs, hashes)

    def aliases_of(self, model_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """``{model_id: {alias: version}}`` for a page of models."""
        out: dict[str, dict[str, int]] = {mid: {} for mid in model_ids}
        with self._db.session() as session:
            for alias in session.scalars(select(Alias).where(Alias.model_id.in_(model_ids))):
                out[alias.model_id][alias.alias] = alias.version
        return out

    def latest_versions(self, model_ids: Sequence[str]) -> dict[str, int | None]:
        with self._db.session() as session:
            rows = session.execute(
                select(ModelVersion.model_id, func.max(ModelVersion.version))
                .where(ModelVersion.model_id.in_(model_ids))
                .group_by(ModelVersion.model_id)
            ).all()
        latest: dict[str, int | None] = {mid: None for mid in model_ids}
        latest.update({mid: int(v) for mid, v in rows})
        return latest

    # -- versions --------------------------------------------------------------------
    def push_version(
        self,
        caller: Caller,
        name: str,
        upload: StagedFile,
        meta: VersionMeta,
        *,
        create: bool = False,
        check: PushCheck | None = None,
    ) -> ModelVersion:
        """Check an uploaded artifact, store it and register it as the next version.

        The staged file is consumed; on any error nothing is stored. With ``create`` a model
        ``name`` that does not exist yet is registered with the version (as MLflow's
        ``register_model`` does), owned by the caller; one that exists must be writable by
        the caller. ``check`` sees the checked artifact before it is registered and may
        refuse it by raising. The version's ``params["outputs"]`` records what the model
        returns (``logits``, ``probabilities``…): as stated in ``meta.params``, else as read
        from the artifact.
        """
        caller.require(Scope.WRITE)
        try:
            model = self._model_to_push(caller, name, create)
            if meta.parent_version is not None:
                self.get_version(caller, meta.parent_model or name, str(meta.parent_version))
            with scratch_dir(self._tmp, "artifact-") as work:
                info = inspect_artifact(
                    upload.path,
                    declared_format=meta.format,
                    filename=upload.filename,
                    spec=meta.spec,
                    work_dir=work,
                    spec_checker=spec_checker_for(meta.params),
                    max_unpacked_bytes=self._max_unpacked,
                    declared_outputs=meta.params.get(OUTPUTS_PARAM),
                )
                if info.outputs is not None:
                    meta = replace(meta, params={**meta.params, OUTPUTS_PARAM: info.outputs})
                signature = with_declared(info.signature, meta.signature, info.format)
                if check is not None:
                    check(Candidate(name, info.format, signature, info.spec, meta.params))
                weights = info.files.get("model.safetensors")
                if weights is not None and weights.resolve() != upload.path.resolve():
                    stored = self._blobs.put_file(weights)  # unpacked from an archive
                else:
                    stored = self._blobs.put_file(upload.path, upload.sha256, trusted=True)
            return self._register(
                caller,
                model if model is not None else name,
                stored.sha256,
                stored.size,
                info.format,
                info.spec,
                signature,
                meta,
            )
        finally:
            upload.discard()

    def _model_to_push(self, caller: Caller, name: str, create: bool) -> Model | None:
        """The model a version is pushed to; None when ``create`` and there is none yet.

        A model that exists but that the caller may not read is "not found", as everywhere.
        """
        with self._db.session() as session:
            exists = session.scalar(select(Model.id).where(Model.name == name)) is not None
            if exists or not create:
                return self._model(session, caller, name, Permission.WRITE)
        check_name(name, "model name")
        return None

    def check_push(self, caller: Caller, name: str, *, create: bool = False) -> None:
        """Raise, before an upload is read, if ``caller`` may not push a version to ``name``."""
        caller.require(Scope.WRITE)
        self._model_to_push(caller, name, create)

    def _register(
        self,
        caller: Caller,
        model: Model | str,
        sha256: str,
        size: int,
        fmt: str,
        spec: dict[str, Any] | None,
        signature: dict[str, Any] | None,
        meta: VersionMeta,
    ) -> ModelVersion:
        """Add the version (and, given a name of a model not yet registered, the model)."""
        for _attempt in range(5):
            with self._db.session() as session:
                if isinstance(model, str):
                    owner = self._new_model(session, caller, model)
                    if owner is None:
                        continue  # registered meanwhile by a concurrent push; check access
                else:
                    owner = model
                number = (
                    session.scalar(
                        select(func.max(ModelVersion.version)).where(
                            ModelVersion.model_id == owner.id
                        )
                    )
                    or 0
                ) + 1
                row = ModelVersion(
                    model_id=owner.id,
                    version=number,
                    format=fmt,
                    sha256=sha256,
                    size=size,
                    spec=spec,
                    signature=signature,
                    metrics=meta.metrics,
                    params=meta.params,
                    description=meta.description,
                    dataset_id=meta.dataset_id,
                    job_id=meta.job_id,
                    parent_version=meta.parent_version,
                    parent_model=meta.parent_model if meta.parent_model != owner.name else None,
                    created_by_id=caller.principal_id,
                )
                session.add(row)
                try:
                    session.flush()
                except IntegrityError:
                    session.rollback()
                    continue  # a concurrent push took this number; take the next one
                add_refs(session, VERSION_REF, row.id, [sha256])
                record(
                    session,
                    caller,
                    "version.create",
                    f"model:{owner.name}/{number}",
                    {"sha256": sha256, "format": fmt},
                )
                session.refresh(row)
                return row
        raise Conflict("could not allocate a version number; retry")

    def _new_model(self, session: Session, caller: Caller, name: str) -> Model | None:
        """The model ``name`` for a first push: registered now in ``session`` if there is
        none, else the existing one if the caller may write to it; None (the session rolled
        back) when a concurrent push registered it first."""
        existing = session.scalar(select(Model).where(Model.name == name))
        if existing is not None:
            return self._model(session, caller, name, Permission.WRITE)
        row = Model(
            name=name,
            task=None,
            description="",
            owner_id=caller.principal_id,
            project_id=caller.project_id,
        )
        session.add(row)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            return None
        record(session, caller, "model.create", f"model:{name}", {"on": "push"})
        return row

    def list_versions(
        self, caller: Caller, name: str, limit: int, offset: int
    ) -> tuple[Sequence[ModelVersion], int]:
        model = self.get_model(caller, name)
        with self._db.session() as session:
            where = ModelVersion.model_id == model.id
            total = session.scalar(select(func.count()).select_from(ModelVersion).where(where))
            rows = session.scalars(
                select(ModelVersion)
                .where(where)
                .order_by(ModelVersion.version)
                .limit(limit)
                .offset(offset)
            ).all()
            return rows, total or 0

    def get_version(
        self, caller: Caller, name: str, ref: str, permission: Permission = Permission.READ
    ) -> ModelVersion:
        """A version by number or alias (``3``, ``production``, ``latest``)."""
        model = self.get_model(caller, name, permission)
        with self._db.session() as session:
            return self._resolve(session, model, ref)

    def _resolve(self, session: Session, model: Model, ref: str) -> ModelVersion:
        query = select(ModelVersion).where(ModelVersion.model_id == model.id)
        number = version_number(ref)
        if number is not None:
            row = (
                session.scalar(query.where(ModelVersion.version == number))
                if number <= MAX_VERSION
                else None
            )
        elif ref == "latest":
            row = session.scalar(query.order_by(ModelVersion.version.desc()).limit(1))
        else:
            alias = session.get(Alias, (model.id, ref))
            row = (
                session.scalar(query.where(ModelVersion.version == alias.version))
                if alias
                else None
            )
        if row is None:
            raise NotFound(f"model '{model.name}' has no version or alias '{ref}'")
        return row

    def resolve(self, name: str, ref: str) -> ModelVersion:
        """A version by number or alias, without an access check (for the serving layer,
        which checked access when the deployment was made)."""
        with self._db.session() as session:
            model = session.scalar(select(Model).where(Model.name == name))
            if model is None:
                raise NotFound(f"no model named '{name}'")
            return self._resolve(session, model, ref)

    def compare_versions(
        self, caller: Caller, name: str, first: str, second: str
    ) -> dict[str, Any]:
        """Two versions side by side: size, parameters, non-zeros, latency and metric, as the
        compression jobs that made or used them measured (see
        :func:`modelyard.compression.report.side_by_side`)."""
        # The report module loads PyTorch; only a comparison needs it.
        from modelyard.compression.report import side_by_side

        rows = []
        for ref in (first, second):
            version = self.get_version(caller, name, ref)
            rows.append(
                {
                    "model": name,
                    "version": version.version,
                    "format": version.format,
                    "size": version.size,
                    "metrics": version.metrics,
                    "params": version.params,
                }
            )
        return {"model": name, **side_by_side(rows[0], rows[1])}

    def delete_version(self, caller: Caller, name: str, ref: str) -> None:
        version = self.get_version(caller, name, ref, Permission.WRITE)
        with self._db.session() as session:
            pointing = session.scalars(
                select(Alias.alias).where(
                    Alias.model_id == version.model_id, Alias.version == version.version
                )
            ).all()
            if pointing:
                raise Conflict(
                    f"version {version.version} is the target of aliases {list(pointing)}; "
                    "move or delete them first"
                )
            session.delete(session.get_one(ModelVersion, version.id))
            hashes = drop_refs(session, VERSION_REF, version.id)
            record(session, caller, "version.delete", f"model:{name}/{version.version}")
            session.flush()
            delete_unreferenced(session, self._blobs, hashes)

    def open_artifact(
        self, caller: Caller, name: str, ref: str
    ) -> tuple[ModelVersion, Iterator[bytes]]:
        version = self.get_version(caller, name, ref)
        return version, self._blobs.open_stream(version.sha256, DOWNLOAD_CHUNK_SIZE)

    def versions_trained_on(
        self, caller: Caller, dataset_id: str, limit: int
    ) -> list[tuple[str, ModelVersion]]:
        """The newest ``limit`` versions made from the data set ``dataset_id``, as
        ``(model name, version)``, of the models ``caller`` may read."""
        caller.require(Scope.READ)
        query = select(Model, ModelVersion).join(Model, Model.id == ModelVersion.model_id)
        query = query.where(ModelVersion.dataset_id == dataset_id)
        return self._readable(caller, query.order_by(ModelVersion.created_at.desc()), limit)

    def children_of(
        self, caller: Caller, name: str, version: int
    ) -> list[tuple[str, ModelVersion]]:
        """The versions made from version ``version`` of ``name`` (trained further,
        compressed, distilled), as ``(model name, version)``, of the models ``caller`` may
        read."""
        model = self.get_model(caller, name)
        same_model = (ModelVersion.model_id == model.id) & ModelVersion.parent_model.is_(None)
        query = select(Model, ModelVersion).join(Model, Model.id == ModelVersion.model_id)
        query = query.where(
            ModelVersion.parent_version == version, same_model | (ModelVersion.parent_model == name)
        )
        return self._readable(caller, query.order_by(ModelVersion.created_at), 100)

    def _readable(
        self, caller: Caller, query: Select[Model, ModelVersion], limit: int
    ) -> list[tuple[str, ModelVersion]]:
        """Up to ``limit`` rows of ``query`` whose model ``caller`` may read."""
        found: list[tuple[str, ModelVersion]] = []
        with self._db.session() as session:
            for model, version in session.execute(query.limit(limit * 4)).all():
                try:
                    ensure_access(session, caller, RESOURCE, model, Permission.READ, "model")
                except NotFound:
                    continue
                found.append((model.name, version))
                if len(found) == limit:
                    break
        return found

    # -- aliases ---------------------------------------------------------------------
    def aliases(self, caller: Caller, name: str) -> dict[str, int]:
        model = self.get_model(caller, name)
        return self.aliases_of([model.id])[model.id]

    def set_alias(self, caller: Caller, name: str, alias: str, version: int) -> Alias:
        """Point ``alias`` at ``version`` (one call moves it)."""
        check_name(alias, "alias")
        if alias == "latest":
            raise InvalidInput("'latest' is reserved: it always means the newest version")
        model = self.get_model(caller, name, Permission.WRITE)
        with self._db.session() as session:
            self._resolve(session, model, str(version))
            row = session.get(Alias, (model.id, alias))
            if row is None:
                row = Alias(model_id=model.id, alias=alias, version=version)
                session.add(row)
            else:
                row.version = version
            record(session, caller, "alias.set", f"model:{name}@{alias}", {"version": version})
            return row

    def delete_alias(self, caller: Caller, name: str, alias: str) -> None:
        model = self.get_model(caller, name, Permission.WRITE)
        with self._db.session() as session:
            row = session.get(Alias, (model.id, alias))
            if row is None:
                raise NotFound(f"model '{name}' has no alias '{alias}'")
            session.delete(row)
            record(session, caller, "alias.delete", f"model:{name}@{alias}")
