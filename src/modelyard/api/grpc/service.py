"""``inference.GRPCInferenceService``: the Open Inference Protocol v2 over gRPC.

Each RPC answers what its HTTP route under ``/v2`` answers, through the same code: the key
(call metadata ``authorization: Bearer <key>``) is checked against that route's rule in
:mod:`modelyard.api.policy`, access to the deployment by
:func:`modelyard.api.deps.authorize_inference`, and inference runs through the serving
manager, so gRPC requests share the deployment's batcher, queue bound, deadline and metrics
with HTTP ones::

    ServerLive      GET  /v2/health/live                       open
    ServerReady     GET  /v2/health/ready                      open
    ServerMetadata  GET  /v2                                   any valid key
    ModelReady      GET  /v2/models/{m}[/versions/{v}]/ready   'infer', read access
    ModelMetadata   GET  /v2/models/{m}[/versions/{v}]         'infer', read access
    ModelInfer      POST /v2/models/{m}[/versions/{v}]/infer   'infer', read access

Errors keep their HTTP message and take the status code of their HTTP status (:data:`CODES`):
401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 NOT_FOUND, 422 INVALID_ARGUMENT, 429
RESOURCE_EXHAUSTED (with trailing ``retry-after`` metadata), 503 UNAVAILABLE, 504
DEADLINE_EXCEEDED, anything unexpected INTERNAL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from grpc import aio
from starlette.concurrency import run_in_threadpool

from modelyard import __version__
from modelyard.api.deps import authorize_inference
from modelyard.api.grpc import codec
from modelyard.api.grpc import grpc_service_pb2 as pb
from modelyard.api.grpc.metrics import GrpcMetrics
from modelyard.api.policy import Auth, Rule, rule_for
from modelyard.auth.access import Caller
from modelyard.errors import Forbidden, ModelyardError, NotFound, without_paths
from modelyard.platform import Platform
from modelyard.serving import oip
from modelyard.serving.manager import Live
from modelyard.usage.meter import rows_of

SERVICE = "inference.GRPCInferenceService"
log = logging.getLogger("modelyard.grpc")

CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
"""The gRPC status code of each HTTP status a :class:`ModelyardError` carries (others:
INTERNAL)."""

Request = TypeVar("Request")
Response = TypeVar("Response")
Call = Callable[[Request, Caller | None, aio.ServicerContext], Awaitable[Response]]
Handler = Callable[[Request, aio.ServicerContext], Awaitable[Response]]


def bearer_key(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The key of an ``authorization: Bearer <key>`` metadata entry, if there is one."""
    for name, value in metadata or ():
        if name == "authorization" and isinstance(value, str):
            scheme, _, key = value.strip().partition(" ")
            key = key.strip()
            return key if scheme.lower() == "bearer" and key else None
    return None


class InferenceService:
    """The RPCs of ``inference.GRPCInferenceService`` over one platform."""

    def __init__(self, platform: Platform, metrics: GrpcMetrics) -> None:
        self.platform = platform
        self.metrics = metrics
        self._roots = platform.settings.private_roots()

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """The method handlers to register under :data:`SERVICE`, by RPC name."""
        rpcs: list[tuple[str, Any, tuple[str, str], Call[Any, Any]]] = [
            ("ServerLive", pb.ServerLiveRequest, ("GET", "/v2/health/live"), self.server_live),
            ("ServerReady", pb.ServerReadyRequest, ("GET", "/v2/health/ready"), self.server_ready),
            ("ServerMetadata", pb.ServerMetadataRequest, ("GET", "/v2"), self.server_metadata),
            (
                "ModelReady",
                pb.ModelReadyRequest,
                ("GET", "/v2/models/{model}/ready"),
                self.model_ready,
            ),
            (
                "ModelMetadata",
                pb.ModelMetadataRequest,
                ("GET", "/v2/models/{model}"),
                self.model_metadata,
            ),
            (
                "ModelInfer",
                pb.ModelInferRequest,
                ("POST", "/v2/models/{model}/infer"),
                self.model_infer,
            ),
        ]
        handlers = {}
        for name, message, route, call in rpcs:
            rule = rule_for(*route)
            if rule is None:
                raise RuntimeError(f"{name}: no access rule for {route} in api/policy.py")
            handlers[name] = grpc.unary_unary_rpc_method_handler(
                self._handler(name, rule, call),
                request_deserializer=message.FromString,
                response_serializer=_serialize,
            )
        return handlers

    # -- the RPCs ---------------------------------------------------------------------
    async def server_live(
        self, request: pb.ServerLiveRequest, caller: Caller | None, context: aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(
        self, request: pb.ServerReadyRequest, caller: Caller | None, context: aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=True)

    async def server_metadata(
        self,
        request: pb.ServerMetadataRequest,
        caller: Caller | None,
        context: aio.ServicerContext,
    ) -> pb.ServerMetadataResponse:
        # The HTTP extensions (binary tensor data, statistics) are not served over gRPC.
        body = oip.server_metadata("modelyard", __version__, [])
        return pb.ServerMetadataResponse(**body)

    async def model_ready(
        self, request: pb.ModelReadyRequest, caller: Caller | None, context: aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        live = await self._live(caller, request.name)
        version = request.version
        if version and not any(str(s.number) == version for s, _ in live.routes):
            raise NotFound(f"deployment '{request.name}' does not serve version '{version}'")
        return pb.ModelReadyResponse(ready=live.status == "ready")

    async def model_metadata(
        self,
        request: pb.ModelMetadataRequest,
        caller: Caller | None,
        context: aio.ServicerContext,
    ) -> pb.ModelMetadataResponse:
        live = await self._live(caller, request.name)
        body = self.platform.deployment_facade.metadata(live, request.version or None)
        response = pb.ModelMetadataResponse(
            name=body["name"], versions=body["versions"], platform=body["platform"]
        )
        for side in ("inputs", "outputs"):
            for tensor in body[side]:
                getattr(response, side).add(
                    name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"]
                )
        return response

    async def model_infer(
        self, request: pb.ModelInferRequest, caller: Caller | None, context: aio.ServicerContext
    ) -> pb.ModelInferResponse:
        name = request.model_name
        live = await self._live(caller, name)
        inputs = codec.decode_inputs(request)
        wanted = codec.requested_outputs(request)
        deadline = time.monotonic() + live.spec.timeout_ms / 1000
        remaining = context.time_remaining()
        if remaining is not None:  # the client's own deadline, when it is sooner
            deadline = min(deadline, time.monotonic() + remaining)
        ticket = await self.platform.usage.admit(caller, name, "inference")  # type: ignore[arg-type]
        try:
            result = await self.platform.deployment_facade.infer(
                name, inputs, version=request.model_version or None, deadline=deadline
            )
        except ModelyardError as exc:
            ticket.failed(exc.status)
            raise
        ticket.done(version=result.version, model=live.spec.model, rows=rows_of(inputs))
        version = str(result.version) if result.version is not None else None
        return codec.encode_response(request, name, version, result.outputs, wanted)

    # -- shared steps -------------------------------------------------------------------
    async def _live(self, caller: Caller | None, name: str) -> Live:
        assert caller is not None  # every model RPC's rule needs a key
        await authorize_inference(self.platform, caller, name)
        return self.platform.serving.get(name)

    async def _admit(self, rule: Rule, context: aio.ServicerContext) -> Caller | None:
        """The caller behind the call's key, checked against the HTTP route's rule."""
        if rule.auth is Auth.NONE:
            return None
        key = bearer_key(context.invocation_metadata())
        caller = self.platform.auth.cached(key)
        if caller is None:
            caller = await run_in_threadpool(self.platform.auth.authenticate, key)
        if not rule.admits(caller.granted):
            wanted = " or ".join(f"'{s.value}'" for s in sorted(rule.scopes))
            raise Forbidden(f"this API key lacks the {wanted} scope")
        return caller

    def _handler(
        self, method: str, rule: Rule, call: Call[Request, Response]
    ) -> Handler[Request, Response]:
        requests = self.metrics.requests
        latency = self.metrics.latency.labels(method)

        async def handle(request: Request, context: aio.ServicerContext) -> Response:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                caller = await self._admit(rule, context)
                return await call(request, caller, context)
            except ModelyardError as exc:
                code = CODES.get(exc.status, grpc.StatusCode.INTERNAL)
                retry = exc.extra.get("retry_after")
                trailing = (("retry-after", str(retry)),) if retry is not None else ()
                await context.abort(code, without_paths(exc.detail, self._roots), trailing)
                raise  # abort raises; this keeps the type checker informed
            except BaseException as exc:
                if isinstance(exc, aio.AbortError):
                    raise
                if not isinstance(exc, Exception):  # cancelled: the client went away
                    code = grpc.StatusCode.CANCELLED
                    raise
                code = grpc.StatusCode.INTERNAL
                log.exception("unhandled error in %s", method)
                await context.abort(code, "the server hit an unexpected error")
                raise
            finally:
                requests.labels(method, code.name).inc()
                latency.observe(time.perf_counter() - started)

        return handle


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data
