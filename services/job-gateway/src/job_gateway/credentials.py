"""Secrets: device secrets, administrators' API keys, and the keys they are hashed under.

Device secrets and API-key secrets are random (192 bits), so a keyed hash (HMAC-SHA-256
under a server key) is enough to store them: no slow password hash, and a login costs
microseconds. Each kind has its own hash key, so rotating one never revokes the other:
device secrets under `device_secret_key`, API keys under `api_key_hash_key`.

An API key stored before the API-key hash key existed was hashed under the device secret
key; its record has no `hash_key` (read as `HashKey.DEVICE`). It still verifies, and is
hashed again under the API-key hash key on first use (`Administrators.authenticate`).

An API key is `fmk_<key id>_<secret>`; only the hash of the secret is stored, and the key
is shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import SecretStr

from .settings import GatewaySettings


class HashKey(StrEnum):
    """Which server key a stored hash was made with."""

    DEVICE = "device"
    API = "api"


@dataclass(frozen=True)
class Keys:
    owner_api_key: str
    """The bootstrap administrator key (role owner)."""
    device_secret: bytes
    api_key_hash: bytes

    def hash_key(self, which: HashKey) -> bytes:
        return self.api_key_hash if which is HashKey.API else self.device_secret


def load_keys(settings: GatewaySettings) -> Keys:
    """The keys from the settings, or from 0600 files under the data dir (made on first use)."""
    data_dir = settings.common.data_dir

    def key(value: SecretStr | None, file: str) -> str:
        return value.get_secret_value() if value is not None else load_or_create_secret(data_dir / file)

    return Keys(
        owner_api_key=key(settings.admin_api_key, "admin-api-key"),
        device_secret=key(settings.device_secret_key, "device-secret-key").encode(),
        api_key_hash=key(settings.api_key_hash_key, "api-key-hash-key").encode(),
    )


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


def new_device_secret() -> str:
    return secrets.token_urlsafe(24)


def keyed_hash(key: bytes, secret: str) -> str:
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


def hash_matches(key: bytes, secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(keyed_hash(key, secret), stored_hash)


def new_api_key() -> tuple[str, str, str]:
    """(key id, secret, the key as handed out)."""
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(24)
    return key_id, secret, f"fmk_{key_id}_{secret}"


def split_api_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed API key, else None."""
    prefix, _, rest = key.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != "fmk" or not key_id or not secret:
        return None
    return key_id, secret
