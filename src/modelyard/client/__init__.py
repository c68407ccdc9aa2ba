"""The Modelyard Python SDK.

Example::

    from modelyard.client import Client, NotFoundError

    client = Client("http://127.0.0.1:8000", api_key="my_...")
    try:
        version = client.models.version("digits-mlp", "production")
    except NotFoundError:
        version = None
"""

from modelyard.client._client import Client
from modelyard.client._exceptions import (
    APIError,
    AuthenticationError,
    ConflictError,
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
from modelyard.client._resources import Datasets, Keys, Models, Principals
from modelyard.client._resources._acl import GrantLike
from modelyard.client._transfer import ProgressCallback, StrPath
from modelyard.client._types import (
    ACL,
    Alias,
    CreatedKey,
    Dataset,
    Grant,
    Key,
    Lineage,
    Model,
    ModelVersion,
    Owner,
    Principal,
    WhoAmI,
)

__all__ = [
    "ACL",
    "APIError",
    "Alias",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "CreatedKey",
    "Dataset",
    "Datasets",
    "Grant",
    "GrantLike",
    "Key",
    "Keys",
    "Lineage",
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
    "RateLimitError",
    "ServerError",
    "StrPath",
    "TransportError",
    "UnsupportedMediaTypeError",
    "ValidationError",
    "WhoAmI",
]
