"""API key material: generation and hashing.

A key is ``my_`` followed by 43 URL-safe characters (32 random bytes). Only its sha256 is
stored: the key has full entropy, so a fast hash suffices and look-ups stay O(1); the stored
digest is still compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "my_"


def generate_key() -> str:
    """A fresh random API key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The digest under which a key is stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def digests_match(stored: str, presented: str) -> bool:
    """Constant-time comparison of two digests."""
    return hmac.compare_digest(stored.encode("ascii"), presented.encode("ascii"))


def display_prefix(key: str) -> str:
    """The first characters of a key, safe to show in listings."""
    return key[:10]
