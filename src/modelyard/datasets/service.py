"""The data set service: accept uploads, keep originals and canonical forms, enforce access."""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from modelyard.auth.access import Caller, Permission, Scope, ensure_access, visible_clause
from modelyard.auth.acl import ResourceAcl
from modelyard.auth.audit import record
from modelyard.datasets import formats
from modelyard.db.engine import Database
from modelyard.db.tables import Dataset
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.naming import check_name
from modelyard.storage.base import DOWNLOAD_CHUNK_SIZE, BlobStore
from modelyard.storage.refs import add_refs, delete_unreferenced, drop_refs
from modelyard.storage.staging import StagedFile, scratch_dir

RESOURCE = "dataset"
IDX_PARTS = ("images", "labels")


class DatasetService:
    """Owns the ``datasets`` table and the blobs behind it."""

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        tmp_dir: Path,
        limits: formats.IntakeLimits | None = None,
    ) -> None:
        self._db = db
        self._blobs = blobs
        self._tmp = tmp_dir
        self._limits = limits or formats.IntakeLimits()
        self.acl = ResourceAcl(db, RESOURCE, Dataset, self.get)
        """Who besides its owner may use a data set."""

    def create(
        self,
        caller: Caller,
        *,
        name: str,
        uploads: Sequence[StagedFile],
        fmt: str | None = None,
        label: str | None = None,
        description: str = "",
    ) -> Dataset:
        """Validate ``uploads``, store original and canonical form, record the data set.

        The staged files are consumed, whatever happens. On any error nothing is stored.
        """
        try:
            caller.require(Scope.WRITE)
            check_name(name, "data set name")
            self._ensure_free(name)
            if fmt is not None and fmt not in formats.FORMATS:
                raise InvalidInput(f"format must be one of {list(formats.FORMATS)}, got '{fmt}'")
            if len(uploads) == 2 and fmt not in (None, "idx"):
                raise InvalidInput("two files are accepted only for IDX (images and labels)")
            with scratch_dir(self._tmp, "dataset-") as work:
                parsed = formats.ingest(
                    [u.path for u in uploads],
                    work / "canonical",
                    fmt=fmt or ("idx" if len(uploads) == 2 else None),
                    filename=uploads[0].filename,
                    label=label,
                    limits=self._limits,
                )
                return self._store(caller, name, description, uploads, parsed)
        finally:
            for upload in uploads:
                upload.discard()

    def _ensure_free(self, name: str) -> None:
        with self._db.session() as session:
            if session.scalar(select(Dataset.id).where(Dataset.name == name)):
                raise Conflict(f"a data set named '{name}' already exists")

    def _store(
        self,
        caller: Caller,
        name: str,
        description: str,
        uploads: Sequence[StagedFile],
        parsed: formats.ParsedDataset,
    ) -> Dataset:
        originals: dict[str, Any] = {}
        parts = IDX_PARTS if len(uploads) == 2 else ("file",)
        for part, upload in zip(parts, uploads, strict=True):
            info = self._blobs.put_file(upload.path, upload.sha256, trusted=True)
            originals[part] = {
                "sha256": info.sha256,
                "size": info.size,
                "filename": upload.filename or part,
            }
        canonical = {
            file_name: self._blobs.put_file(path).sha256
            for file_name, path in parsed.canonical.items()
        }
        if len(uploads) == 1:
            sha, size = uploads[0].sha256, uploads[0].size
        else:
            sha = hashlib.sha256("".join(u.sha256 for u in uploads).encode()).hexdigest()
            size = sum(u.size for u in uploads)
        hashes = [o["sha256"] for o in originals.values()] + list(canonical.values())
        with self._db.session() as session:
            row = Dataset(
                name=name,
                description=description,
                owner_id=caller.principal_id,
                project_id=caller.project_id,
                format=parsed.format,
                kind=parsed.kind,
                schema=parsed.schema,
                num_rows=parsed.num_rows,
                label=parsed.label,
                sha256=sha,
                size=size,
                originals=originals,
                canonical=canonical,
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError as exc:
                session.rollback()
                delete_unreferenced(session, self._blobs, hashes)
                session.commit()  # nothing to write; deletes what no other record uses
                raise Conflict(f"a data set named '{name}' already exists") from exc
            add_refs(session, RESOURCE, row.id, hashes)
            record(session, caller, "dataset.create", f"dataset:{name}", {"sha256": sha})
            session.refresh(row)
            return row

    def list_datasets(
        self, caller: Caller, limit: int, offset: int, search: str | None = None
    ) -> tuple[Sequence[Dataset], int]:
        """A page of the data sets ``caller`` may read (named with ``search``, if given)."""
        caller.require(Scope.READ)
        where = visible_clause(
            caller, RESOURCE, Dataset.id, Dataset.owner_id, Dataset.public, Dataset.project_id
        )
        if search:
            where = where & Dataset.name.contains(search, autoescape=True)
        with self._db.session() as session:
            total = session.scalar(select(func.count()).select_from(Dataset).where(where)) or 0
            rows = session.scalars(
                select(Dataset)
                .where(where)
                .order_by(Dataset.created_at, Dataset.name)
                .limit(limit)
                .offset(offset)
            ).all()
            return rows, total

    def get(self, caller: Caller, name: str, permission: Permission = Permission.READ) -> Dataset:
        caller.require(Scope.READ if permission is Permission.READ else Scope.WRITE)
        with self._db.session() as session:
            row = session.scalar(select(Dataset).where(Dataset.name == name))
            if row is None:
                raise NotFound(f"no data set named '{name}'")
            ensure_access(session, caller, RESOURCE, row, permission, f"data set named '{name}'")
            return row

    def delete(self, caller: Caller, name: str) -> None:
        row = self.get(caller, name, Permission.WRITE)
        with self._db.session() as session:
            session.delete(session.get_one(Dataset, row.id))
            hashes = drop_refs(session, RESOURCE, row.id)
            record(session, caller, "dataset.delete", f"dataset:{name}")
            session.flush()
            delete_unreferenced(session, self._blobs, hashes)

    def download(self, caller: Caller, name: str) -> tuple[Dataset, Iterator[bytes], str]:
        """The original bytes (a tar of both files for an IDX pair) and a file name."""
        row = self.get(caller, name)
        if "file" in row.originals:
            original = row.originals["file"]
            return (
                row,
                self._blobs.open_stream(original["sha256"], DOWNLOAD_CHUNK_SIZE),
                original["filename"],
            )
        return row, self._tar_stream(row), f"{row.name}.tar"

    def _tar_stream(self, row: Dataset) -> Iterator[bytes]:
        with scratch_dir(self._tmp, "download-") as work:
            archive = work / "pair.tar"
            with tarfile.open(archive, "w") as tar:
                for part in IDX_PARTS:
                    original = row.originals[part]
                    local = self._blobs.fetch_to(original["sha256"], work / original["filename"])
                    tar.add(local, arcname=Path(original["filename"]).name)
            with archive.open("rb") as f:
                yield from iter(lambda: f.read(1024 * 1024), b"")

    def canonical_files(self, row: Dataset, dest: Path) -> dict[str, Path]:
        """The canonical form as files named for what they hold, inside ``dest``.

        A plaintext local blob is linked, not copied, so it can be memory-mapped in place.
        """
        dest.mkdir(parents=True, exist_ok=True)
        out: dict[str, Path] = {}
        for file_name, sha in row.canonical.items():
            target = dest / Path(file_name).name
            local = self._blobs.local_path(sha)
            if local is not None:
                target.unlink(missing_ok=True)
                target.symlink_to(local)
            else:
                self._blobs.fetch_to(sha, target)
            out[file_name] = target
        return out
