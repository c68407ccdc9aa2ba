"""Who may call which route: the one table every HTTP route goes through.

Each route has a :class:`Rule`: whether it needs a key, which scopes admit it (any one of
them; an admin key carries them all), and what kind of body it takes, which sets the body's
size cap. :mod:`modelyard.api.gate` applies the rule before a route reads a byte of its body;
ownership (whose data set, model or deployment) is then checked by the services in
:mod:`modelyard.auth.access`. ``create_app`` refuses to start if a route has no rule here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from modelyard.auth.access import Scope


class Auth(StrEnum):
    """Whether a route needs a key."""

    NONE = "none"  # open: health probes and the API's own documents
    OPTIONAL = "optional"  # open, but a key that is sent must be valid (it may see more)
    KEY = "key"  # a valid key carrying one of the rule's scopes
    # The dashboard: a session cookie whose key carries one of the rule's scopes (a page
    # without one redirects to sign-in; see modelyard.ui.sessions). Bearer keys do not count.
    SESSION = "session"


class Body(StrEnum):
    """What a route's body is, which decides its size cap (see Settings)."""

    JSON = "json"  # max_json_bytes
    INFER = "infer"  # max_infer_bytes
    UPLOAD = "upload"  # max_upload_bytes, streamed to disk


@dataclass(frozen=True)
class Rule:
    """The access rule of one route."""

    auth: Auth
    scopes: frozenset[Scope] = frozenset()
    body: Body = Body.JSON

    def admits(self, has: frozenset[Scope]) -> bool:
        """Whether a key with the scopes ``has`` may call the route (no scopes: any key)."""
        return not self.scopes or bool(self.scopes & has) or Scope.ADMIN in has


OPEN = Rule(Auth.NONE)


def needs(*scopes: Scope, body: Body = Body.JSON) -> Rule:
    """A rule admitting a key with any one of ``scopes`` (none given: any valid key)."""
    return Rule(Auth.KEY, frozenset(scopes), body)


def session(*scopes: Scope, body: Body = Body.JSON) -> Rule:
    """A dashboard rule: a signed-in session whose key has any one of ``scopes``."""
    return Rule(Auth.SESSION, frozenset(scopes), body)


READ, WRITE, INFER = Scope.READ, Scope.WRITE, Scope.INFER
KEYS, ADMIN = Scope.KEYS, Scope.ADMIN

ROUTES: dict[tuple[str, str], Rule] = {
    # -- probes, documents and metrics ---------------------------------------------------
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
    ("GET", "/v2/health/live"): OPEN,
    ("GET", "/v2/health/ready"): OPEN,
    ("GET", "/openapi.json"): OPEN,
    ("GET", "/docs"): OPEN,
    ("GET", "/docs/oauth2-redirect"): OPEN,
    ("GET", "/docs/static/{file}"): OPEN,
    # With metrics_require_key the gate asks for the 'metrics' scope here.
    ("GET", "/metrics"): Rule(Auth.OPTIONAL, frozenset({Scope.METRICS})),
    # -- identity, principals and keys ---------------------------------------------------
    ("GET", "/api/v1/whoami"): needs(),
    ("POST", "/api/v1/principals"): needs(ADMIN),
    ("GET", "/api/v1/principals"): needs(ADMIN),
    ("POST", "/api/v1/keys"): needs(KEYS),
    ("GET", "/api/v1/keys"): needs(KEYS),
    ("DELETE", "/api/v1/keys/{key_id}"): needs(KEYS),
    # -- projects and the audit log (ownership and roles checked by the project service) --
    ("POST", "/api/v1/projects"): needs(WRITE),
    ("GET", "/api/v1/projects"): needs(READ),
    ("GET", "/api/v1/projects/{project}"): needs(READ),
    ("PATCH", "/api/v1/projects/{project}"): needs(WRITE),
    ("DELETE", "/api/v1/projects/{project}"): needs(WRITE),
    ("PUT", "/api/v1/projects/{project}/members/{principal}"): needs(WRITE),
    ("DELETE", "/api/v1/projects/{project}/members/{principal}"): needs(WRITE),
    ("GET", "/api/v1/audit"): needs(READ),
    ("GET", "/api/v1/executor"): needs(ADMIN),
    # -- data sets -------------------------------------------------------------------------
    ("POST", "/api/v1/datasets"): needs(WRITE, body=Body.UPLOAD),
    ("GET", "/api/v1/datasets"): needs(READ),
    ("GET", "/api/v1/datasets/{name}"): needs(READ),
    ("DELETE", "/api/v1/datasets/{name}"): needs(WRITE),
    ("GET", "/api/v1/datasets/{name}/download"): needs(READ),
    ("GET", "/api/v1/datasets/{name}/acl"): needs(READ),
    ("PUT", "/api/v1/datasets/{name}/acl"): needs(WRITE),
    ("GET", "/api/v1/datasets/{name}/privacy-budget"): needs(READ),
    # The owner (or an admin) only; the service checks who owns the data set.
    ("PUT", "/api/v1/datasets/{name}/privacy-budget"): needs(WRITE),
    # -- models and versions ---------------------------------------------------------------
    ("POST", "/api/v1/models"): needs(WRITE),
    ("GET", "/api/v1/models"): needs(READ),
    ("GET", "/api/v1/models/{name}"): needs(READ),
    ("PATCH", "/api/v1/models/{name}"): needs(WRITE),
    ("DELETE", "/api/v1/models/{name}"): needs(WRITE),
    ("POST", "/api/v1/models/{name}/versions"): needs(WRITE, body=Body.UPLOAD),
    ("GET", "/api/v1/models/{name}/versions"): needs(READ),
    ("GET", "/api/v1/models/{name}/versions/{ref}"): needs(READ),
    ("GET", "/api/v1/models/{name}/versions/{ref}/download"): needs(READ),
    ("GET", "/api/v1/models/{name}/versions/{ref}/compare/{other}"): needs(READ),
    ("DELETE", "/api/v1/models/{name}/versions/{ref}"): needs(WRITE),
    ("GET", "/api/v1/models/{name}/aliases"): needs(READ),
    ("PUT", "/api/v1/models/{name}/aliases/{alias}"): needs(WRITE),
    ("DELETE", "/api/v1/models/{name}/aliases/{alias}"): needs(WRITE),
    ("GET", "/api/v1/models/{name}/acl"): needs(READ),
    ("PUT", "/api/v1/models/{name}/acl"): needs(WRITE),
    # -- jobs ------------------------------------------------------------------------------
    ("POST", "/api/v1/jobs"): needs(WRITE),
    ("POST", "/train_model"): needs(WRITE),
    ("GET", "/api/v1/jobs"): needs(READ),
    ("GET", "/api/v1/jobs/{job_id}"): needs(READ),
    ("POST", "/api/v1/jobs/{job_id}/cancel"): needs(WRITE),
    ("GET", "/api/v1/jobs/{job_id}/logs"): needs(READ),
    ("GET", "/api/v1/jobs/{job_id}/events"): needs(READ),
    # -- deployments -----------------------------------------------------------------------
    ("POST", "/api/v1/deployments"): needs(WRITE),
    ("GET", "/api/v1/deployments"): needs(READ),
    ("GET", "/api/v1/deployments/{name}"): needs(READ),
    ("PATCH", "/api/v1/deployments/{name}"): needs(WRITE),
    ("DELETE", "/api/v1/deployments/{name}"): needs(WRITE),
    ("GET", "/api/v1/deployments/{name}/acl"): needs(READ),
    ("PUT", "/api/v1/deployments/{name}/acl"): needs(WRITE),
    ("POST", "/api/v1/deployments/{name}/predict"): needs(INFER, body=Body.INFER),
    ("POST", "/api/v1/deployments/{name}/explain"): needs(INFER, body=Body.INFER),
    # KServe's v1 protocol: explanations (the OpenAI routes own the rest of /v1/models).
    ("POST", "/v1/models/{name}:explain"): needs(INFER, body=Body.INFER),
    # -- Open Inference Protocol v2 --------------------------------------------------------
    ("GET", "/v2"): needs(),
    ("GET", "/v2/models/{model}"): needs(INFER),
    ("GET", "/v2/models/{model}/versions/{version}"): needs(INFER),
    ("GET", "/v2/models/{model}/ready"): needs(INFER),
    ("GET", "/v2/models/{model}/versions/{version}/ready"): needs(INFER),
    ("POST", "/v2/models/{model}/infer"): needs(INFER, body=Body.INFER),
    ("POST", "/v2/models/{model}/versions/{version}/infer"): needs(INFER, body=Body.INFER),
    ("GET", "/v2/models/{model}/stats"): needs(INFER),
    ("GET", "/v2/models/{model}/versions/{version}/stats"): needs(INFER),
    # -- limits, budgets, usage and costs (admins and project owners change them) ----------
    ("GET", "/api/v1/limits/keys/{key_id}"): needs(READ),
    ("PUT", "/api/v1/limits/keys/{key_id}"): needs(WRITE),
    ("DELETE", "/api/v1/limits/keys/{key_id}"): needs(WRITE),
    ("GET", "/api/v1/limits/projects/{project}"): needs(READ),
    ("PUT", "/api/v1/limits/projects/{project}"): needs(WRITE),
    ("DELETE", "/api/v1/limits/projects/{project}"): needs(WRITE),
    ("GET", "/api/v1/budgets/{project}"): needs(READ),
    ("PUT", "/api/v1/budgets/{project}"): needs(WRITE),
    ("DELETE", "/api/v1/budgets/{project}"): needs(WRITE),
    ("GET", "/api/v1/usage"): needs(READ),
    ("GET", "/api/v1/costs"): needs(READ),
    # -- OpenAI-compatible API -------------------------------------------------------------
    ("GET", "/v1/models"): needs(READ),
    ("GET", "/v1/models/{model}"): needs(READ),
    ("POST", "/v1/chat/completions"): needs(INFER),
    ("POST", "/v1/completions"): needs(INFER),
    ("POST", "/v1/embeddings"): needs(INFER),
    ("POST", "/v1/files"): needs(WRITE, body=Body.UPLOAD),
    ("GET", "/v1/files"): needs(READ),
    ("GET", "/v1/files/{file_id}"): needs(READ),
    ("GET", "/v1/files/{file_id}/content"): needs(READ),
    ("DELETE", "/v1/files/{file_id}"): needs(WRITE),
    ("POST", "/v1/fine_tuning/jobs"): needs(WRITE),
    ("GET", "/v1/fine_tuning/jobs"): needs(READ),
    ("GET", "/v1/fine_tuning/jobs/{job_id}"): needs(READ),
    ("POST", "/v1/fine_tuning/jobs/{job_id}/cancel"): needs(WRITE),
    ("GET", "/v1/fine_tuning/jobs/{job_id}/events"): needs(READ),
    ("GET", "/v1/fine_tuning/jobs/{job_id}/checkpoints"): needs(READ),
    # -- the dashboard (modelyard.ui): session cookies, CSRF tokens on every form -----------
    ("GET", "/ui/static/{file}"): OPEN,
    ("GET", "/ui/login"): OPEN,
    ("POST", "/ui/login"): OPEN,
    ("POST", "/ui/logout"): session(),
    ("GET", "/ui"): session(READ),
    ("GET", "/ui/datasets"): session(READ),
    ("GET", "/ui/datasets/{name}"): session(READ),
    ("GET", "/ui/models"): session(READ),
    ("GET", "/ui/models/{name}"): session(READ),
    ("GET", "/ui/models/{name}/versions/{ref}"): session(READ),
    ("GET", "/ui/models/{name}/compare"): session(READ),
    ("GET", "/ui/jobs"): session(READ),
    ("GET", "/ui/jobs/{job_id}"): session(READ),
    ("GET", "/ui/jobs/{job_id}/panel"): session(READ),
    ("GET", "/ui/jobs/{job_id}/stream"): session(READ),
    ("POST", "/ui/jobs/{job_id}/cancel"): session(WRITE),
    ("GET", "/ui/deployments"): session(READ),
    ("POST", "/ui/deployments"): session(WRITE),
    ("GET", "/ui/deployments/{name}"): session(READ),
    ("GET", "/ui/deployments/{name}/load"): session(READ),
    ("POST", "/ui/deployments/{name}/predict"): session(INFER, body=Body.INFER),
    ("POST", "/ui/deployments/{name}/chat"): session(INFER),
    ("GET", "/ui/usage"): session(READ),
    ("GET", "/ui/keys"): session(KEYS),
    ("POST", "/ui/keys"): session(KEYS),
    ("POST", "/ui/keys/{key_id}/revoke"): session(KEYS),
}


_CONVERTER = re.compile(r"\{(\w+):\w+\}")


def rule_for(method: str, template: str) -> Rule | None:
    """The rule of a route (``HEAD`` follows ``GET``; ``{x:path}`` is written ``{x}``, as in
    the OpenAPI document), or None for a route without one."""
    template = _CONVERTER.sub(r"{\1}", template)
    return ROUTES.get(("GET" if method == "HEAD" else method, template))
