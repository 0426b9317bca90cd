"""Device and administrator credentials.

Device secrets are random (192 bits), so a keyed hash (HMAC-SHA-256 under a server key)
is enough to store them: no slow password hash, and a login costs microseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path


def new_device_secret() -> str:
    return secrets.token_urlsafe(24)


def device_secret_hash(key: bytes, secret: str) -> str:
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


def secret_matches(key: bytes, secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(device_secret_hash(key, secret), stored_hash)


def load_or_create_secret(path: Path, nbytes: int = 32) -> str:
    """A secret kept in a 0600 file under the data dir, created on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value
