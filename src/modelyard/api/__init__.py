"""The HTTP interface: thin routers over the services."""

from modelyard.api.app import create_app

__all__ = ["create_app"]
