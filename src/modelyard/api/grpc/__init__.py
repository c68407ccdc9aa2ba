"""The Open Inference Protocol v2 over gRPC (KServe / Triton ``inference.GRPCInferenceService``).

Served on ``MODELYARD_GRPC_PORT`` next to the HTTP API, with the same keys, access rules,
batchers and metrics, so ``tritonclient.grpc`` works unchanged::

    import tritonclient.grpc as triton

    client = triton.InferenceServerClient("127.0.0.1:8001")
    headers = {"authorization": "Bearer my_..."}
    client.is_model_ready("mlp", headers=headers)

Modules: ``grpc_service.proto`` (the protocol subset served) and its generated
``grpc_service_pb2`` (see ``_generate.py``), :mod:`.codec` (messages to numpy and back),
:mod:`.service` (the RPCs), :mod:`.server` (the ``grpc.aio`` server and its lifespan).
"""

from modelyard.api.grpc.server import GrpcServer, attach
from modelyard.api.grpc.service import SERVICE, InferenceService

__all__ = ["SERVICE", "GrpcServer", "InferenceService", "attach"]
