"""Principals and API keys: create, list, revoke, authenticate, bootstrap the first admin."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.auth.access import Caller, Scope
from modelyard.auth.audit import record
from modelyard.auth.cache import AnswerCache
from modelyard.auth.keys import digests_match, display_prefix, generate_key, hash_key
from modelyard.auth.projects import (
    create_personal_project,
    personal_project_id,
    principal_roles,
    project_by_name,
)
from modelyard.db.engine import Database
from modelyard.db.tables import ApiKey, Principal, Project, ProjectMember
from modelyard.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated

ADMIN_NAME = "admin"
ALL_SCOPES = tuple(s.value for s in Scope)


@dataclass(frozen=True)
class NewKey:
    """A key just created: the only moment its secret exists outside the caller's hands."""

    record: ApiKey
    secret: str


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _unexpired(caller: Caller | None) -> Caller | None:
    """``caller`` unless its key expired since it was remembered."""
    if caller is None or caller.key_expires_at is None:
        return caller
    return caller if datetime.now(UTC) < caller.key_expires_at else None


class AuthService:
    """Everything about who may call the server."""

    def __init__(self, db: Database, cache_ttl_s: float = 5.0) -> None:
        self._db = db
        # Recently seen keys, so the inference hot path does not query the database on every
        # request. A key revoked here is dropped at once; another server sharing the
        # database notices within the TTL.
        self._cache: AnswerCache[str, Caller] = AnswerCache(cache_ttl_s)
        # (key id, project asked for) -> the caller working in that project.
        self._in_project: AnswerCache[tuple[str, str], Caller] = AnswerCache(cache_ttl_s)

    def clear_cache(self) -> None:
        """Forget every recently authenticated key."""
        self._cache.clear()
        self._in_project.clear()

    def forget_principal(self, principal_id: str) -> None:
        """Forget the remembered keys of one principal (its projects or roles changed)."""
        self._cache.drop_where(lambda _digest, known: known.principal_id == principal_id)
        self._in_project.drop_where(lambda _key, known: known.principal_id == principal_id)

    def cached_in_project(self, caller: Caller, project: str) -> Caller | None:
        """:meth:`in_project`'s answer if it is remembered (safe on the event loop)."""
        return self._in_project.get((caller.key_id, project))

    def in_project(self, caller: Caller, project: str) -> Caller:
        """``caller`` working in ``project`` (a name or an id) for one request, as a key
        bound to it would: it sees and changes only that project, and what it makes goes
        there. The principal must be a member (404 otherwise, as for an unknown project); a
        key bound to another project is refused (403)."""
        with self._db.session() as session:
            row = session.scalar(select(Project).where(Project.name == project))
            if row is None:
                row = session.get(Project, project)
            if row is None or (not caller.acts_as_admin and caller.role(row.id) is None):
                raise NotFound(f"no project named '{project}'")
            if caller.key_project_id not in (None, row.id):
                raise Forbidden("this API key is bound to another project")
        chosen = replace(caller, project_id=row.id, key_project_id=row.id)
        self._in_project.put((caller.key_id, project), chosen)
        return chosen

    # -- bootstrap -------------------------------------------------------------------
    def bootstrap(self, key: str | None) -> str | None:
        """Create the admin principal and its first key on an empty server.

        Returns the new key's secret (``key`` when given) or None when the server already
        has principals, in which case nothing changes.
        """
        with self._db.session() as session:
            if session.scalar(select(func.count()).select_from(Principal)):
                return None
            admin = Principal(name=ADMIN_NAME, kind="user", is_admin=True)
            session.add(admin)
            session.flush()
            create_personal_project(session, admin)
            secret = key or generate_key()
            session.add(
                ApiKey(
                    principal_id=admin.id,
                    name="bootstrap",
                    prefix=display_prefix(secret),
                    key_hash=hash_key(secret),
                    scopes=list(ALL_SCOPES),
                )
            )
            record(session, None, "bootstrap", f"principal:{admin.name}")
        return secret

    # -- authentication --------------------------------------------------------------
    def cached(self, presented: str | None) -> Caller | None:
        """The caller behind a recently seen, still valid key, without touching the
        database (safe to call on the event loop); None when it must be looked up."""
        if not presented:
            return None
        return self.cached_digest(hash_key(presented))

    def cached_digest(self, digest: str) -> Caller | None:
        """:meth:`cached` for the key stored under ``digest`` (a dashboard session's key)."""
        return _unexpired(self._cache.get(digest))

    def authenticate(self, presented: str | None) -> Caller:
        """The caller behind a bearer key; raises 401 for a missing, unknown, revoked or
        expired key (with the same message, so the reply does not tell which)."""
        if not presented:
            raise Unauthenticated("an API key is required: send 'Authorization: Bearer <key>'")
        return self.authenticate_digest(hash_key(presented))

    def authenticate_digest(self, digest: str) -> Caller:
        """:meth:`authenticate` for the key stored under ``digest``: a dashboard session
        names its key so, and is looked up again through the same cache on every request."""
        now = datetime.now(UTC)
        cached = _unexpired(self._cache.fresh(digest))
        if cached is not None:
            return cached
        with self._db.session() as session:
            key = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
            if (
                key is None
                or not digests_match(key.key_hash, digest)
                or key.revoked_at is not None
                or (key.expires_at is not None and _as_utc(key.expires_at) <= now)
            ):
                self._cache.drop(digest)
                raise Unauthenticated("the API key is invalid, expired or revoked")
            last = key.last_used_at
            # Writing on every request would serialize reads on SQLite; a minute is plenty.
            if last is None or (now - _as_utc(last)).total_seconds() > 60:
                key.last_used_at = now
            principal = key.principal
            caller = Caller(
                principal_id=principal.id,
                name=principal.name,
                is_admin=principal.is_admin,
                scopes=frozenset(key.scopes),
                key_id=key.id,
                key_expires_at=_as_utc(key.expires_at) if key.expires_at else None,
                project_id=key.project_id or personal_project_id(session, principal.id),
                key_project_id=key.project_id,
                project_roles=principal_roles(session, principal.id),
            )
        self._cache.put(digest, caller)
        return caller

    # -- principals ------------------------------------------------------------------
    def create_principal(
        self, caller: Caller, name: str, kind: str = "user", is_admin: bool = False
    ) -> Principal:
        caller.require_admin()
        if kind not in ("user", "service"):
            raise InvalidInput("kind must be 'user' or 'service'")
        with self._db.session() as session:
            principal = Principal(name=name, kind=kind, is_admin=is_admin)
            session.add(principal)
            try:
                session.flush()
            except IntegrityError as exc:
                raise Conflict(f"a principal named '{name}' already exists") from exc
            create_personal_project(session, principal)
            record(session, caller, "principal.create", f"principal:{name}")
            return principal

    def list_principals(self, caller: Caller) -> Sequence[Principal]:
        caller.require_admin()
        with self._db.session() as session:
            return session.scalars(select(Principal).order_by(Principal.created_at)).all()

    # -- keys ------------------------------------------------------------------------
    def create_key(
        self,
        caller: Caller,
        name: str,
        scopes: Iterable[str],
        expires_at: datetime | None = None,
        principal: str | None = None,
        project: str | None = None,
    ) -> NewKey:
        """Issue a key for the caller's principal (or, with an admin key, for any principal).

        The calling key needs the ``keys`` scope (an admin key has it). A new key never gets a
        scope its creator lacks nor outlives it: without ``expires_at`` it expires with the
        creating key. With ``project`` the key is bound to that project, of which its
        principal must be a member; a key made by a bound key is bound to the same project.
        """
        caller.require(Scope.KEYS)
        wanted = sorted(set(scopes))
        unknown = [s for s in wanted if s not in ALL_SCOPES]
        if unknown or not wanted:
            raise InvalidInput(
                f"scopes must be a non-empty subset of {list(ALL_SCOPES)}; got {wanted}"
            )
        missing = [s for s in wanted if not caller.has(Scope(s))]
        if missing:
            raise Forbidden(f"a key cannot grant scopes it lacks: {missing}")
        now = datetime.now(UTC)
        if expires_at is not None and _as_utc(expires_at) <= now:
            raise InvalidInput("expires_at must be in the future")
        limit = caller.key_expires_at
        if limit is not None:
            if expires_at is None:
                expires_at = limit
            elif _as_utc(expires_at) > limit:
                raise Forbidden(
                    f"a key cannot outlive the key that creates it (expires {limit.isoformat()})"
                )
        with self._db.session() as session:
            if principal is not None and principal != caller.name:
                caller.require_admin()
                owner = session.scalar(select(Principal).where(Principal.name == principal))
                if owner is None:
                    raise NotFound(f"no principal named '{principal}'")
            else:
                owner = session.get(Principal, caller.principal_id)
                if owner is None:
                    raise Unauthenticated("the calling principal no longer exists")
            if Scope.ADMIN.value in wanted and not owner.is_admin:
                raise InvalidInput("the 'admin' scope can only be given to an admin principal")
            bound = self._binding(session, caller, owner, project)
            secret = generate_key()
            key = ApiKey(
                principal_id=owner.id,
                name=name,
                prefix=display_prefix(secret),
                key_hash=hash_key(secret),
                scopes=wanted,
                expires_at=expires_at,
                project_id=bound,
            )
            session.add(key)
            session.flush()
            session.refresh(key)
            record(
                session,
                caller,
                "key.create",
                f"key:{key.id}",
                {"principal": owner.name},
                project_id=bound,
            )
            return NewKey(record=key, secret=secret)

    def _binding(
        self, session: Session, caller: Caller, owner: Principal, project: str | None
    ) -> str | None:
        """The id of the project a new key is bound to (None: unbound)."""
        if project is None:
            return caller.key_project_id
        row = project_by_name(session, caller, project)
        if caller.key_project_id not in (None, row.id):
            raise Forbidden("a key bound to a project cannot make keys for another project")
        member = session.get(ProjectMember, (row.id, owner.id))
        if member is None:
            raise InvalidInput(f"'{owner.name}' is not a member of project '{project}'")
        return row.id

    def current_key(self, caller: Caller) -> ApiKey:
        """The key the caller authenticated with."""
        with self._db.session() as session:
            return session.get_one(ApiKey, caller.key_id)

    def list_keys(self, caller: Caller) -> Sequence[ApiKey]:
        """The caller's own keys (every key, for an admin key); needs the ``keys`` scope."""
        caller.require(Scope.KEYS)
        with self._db.session() as session:
            query = select(ApiKey).order_by(ApiKey.created_at)
            if not caller.acts_as_admin:
                query = query.where(ApiKey.principal_id == caller.principal_id)
            return session.scalars(query).all()

    def revoke_key(self, caller: Caller, key_id: str) -> None:
        """Revoke one of the caller's keys (any key, for an admin key); needs ``keys``."""
        caller.require(Scope.KEYS)
        with self._db.session() as session:
            key = session.get(ApiKey, key_id)
            if key is None or (
                key.principal_id != caller.principal_id and not caller.acts_as_admin
            ):
                raise NotFound(f"no key with id '{key_id}'")
            if key.revoked_at is None:
                key.revoked_at = datetime.now(UTC)
            self._cache.drop_where(lambda _digest, known: known.key_id == key.id)
            self._in_project.drop_where(lambda _pair, known: known.key_id == key.id)
            record(session, caller, "key.revoke", f"key:{key.id}")
