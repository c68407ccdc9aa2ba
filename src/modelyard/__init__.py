"""Modelyard: a self-hosted Model-as-a-Service platform.

The SDK is the public face of the package::

    from modelyard import Client

    client = Client("http://127.0.0.1:8000", api_key="my_...")
    client.datasets.push("digits", "digits.csv", label="target")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelyard.client import Client

__version__ = "0.1.0"

__all__ = ["Client", "__version__"]


def __getattr__(name: str) -> Any:
    # The SDK is imported on first use, so that server-side code importing a subpackage
    # (modelyard.db, modelyard.nn, ...) does not pay for the client.
    if name == "Client":
        from modelyard.client import Client

        return Client
    raise AttributeError(f"module 'modelyard' has no attribute {name!r}")
