"""The Modelyard Python SDK.

Example::

    from modelyard.client import Client, NotFoundError

    client = Client("http://127.0.0.1:8000", api_key="my_...")
    try:
        version = client.models.version("digits-mlp", "production")
    except NotFoundError:
        version = None

    job = client.fit({"arch": "mlp", "hidden": [64]}, x, y, epochs=10, progress=True)
    print(job.result["model"], job.result["version"])

    deployment = client.deploy("digits", f"{job.result['model']}@{job.result['version']}")
    predictions = deployment.predict(x).argmax(axis=1)
"""

from modelyard.client._client import Client
from modelyard.client._deployment import Deployment
from modelyard.client._exceptions import (
    APIError,
    AuthenticationError,
    ConflictError,
    JobFailedError,
    JobTimeoutError,
    ModelyardError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from modelyard.client._job import Job
from modelyard.client._llm import LLM, LLMModels, Message
from modelyard.client._resources import Datasets, Deployments, Jobs, Keys, Models, Principals
from modelyard.client._resources._acl import GrantLike
from modelyard.client._resources.deployments import TrafficLike
from modelyard.client._resources.projects import AuditEntry, Member, Project, Projects
from modelyard.client._transfer import ProgressCallback, StrPath
from modelyard.client._types import (
    ACL,
    Alias,
    CreatedKey,
    Dataset,
    Grant,
    JobEvent,
    Key,
    Lineage,
    Model,
    ModelVersion,
    Owner,
    Principal,
    ServedVersion,
    TensorInfo,
    WhoAmI,
)

__all__ = [
    "ACL",
    "LLM",
    "APIError",
    "Alias",
    "AuditEntry",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "CreatedKey",
    "Dataset",
    "Datasets",
    "Deployment",
    "Deployments",
    "Grant",
    "GrantLike",
    "Job",
    "JobEvent",
    "JobFailedError",
    "JobTimeoutError",
    "Jobs",
    "Key",
    "Keys",
    "LLMModels",
    "Lineage",
    "Member",
    "Message",
    "Model",
    "ModelVersion",
    "Models",
    "ModelyardError",
    "NotFoundError",
    "Owner",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Principal",
    "Principals",
    "ProgressCallback",
    "Project",
    "Projects",
    "RateLimitError",
    "ServedVersion",
    "ServerError",
    "StrPath",
    "TensorInfo",
    "TrafficLike",
    "TransportError",
    "UnsupportedMediaTypeError",
    "ValidationError",
    "WhoAmI",
]
