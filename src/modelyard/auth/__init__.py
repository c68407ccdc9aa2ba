"""Principals, API keys, scopes and access rules."""

from modelyard.auth.access import Caller, Permission, Scope
from modelyard.auth.service import AuthService, NewKey

__all__ = ["AuthService", "Caller", "NewKey", "Permission", "Scope"]
