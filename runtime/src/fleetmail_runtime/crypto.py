"""Encryption at rest: AES-256-GCM, a fresh nonce per write, a key id on every record.

The associated data binds a ciphertext to the record it belongs to (a grant's identity),
so a ciphertext copied onto another record does not decrypt.

Errors::

    CryptoError
    ├── UnknownKeyError      a record names a key id the keyring does not hold
    └── DecryptionError      wrong key, tampered ciphertext or wrong associated data
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
KEY_BYTES = 32


class CryptoError(Exception):
    pass


class UnknownKeyError(CryptoError):
    pass


class DecryptionError(CryptoError):
    pass


@dataclass(frozen=True)
class Sealed:
    key_id: str
    nonce: bytes
    ciphertext: bytes

    def to_document(self) -> dict[str, object]:
        return {"key_id": self.key_id, "nonce": self.nonce, "ciphertext": self.ciphertext}

    @classmethod
    def from_document(cls, document: dict[str, object]) -> Sealed:
        nonce, ciphertext = document["nonce"], document["ciphertext"]
        if not isinstance(nonce, bytes) or not isinstance(ciphertext, bytes):
            raise DecryptionError("sealed record is malformed (nonce and ciphertext must be bytes)")
        return cls(key_id=str(document["key_id"]), nonce=nonce, ciphertext=ciphertext)


class Keyring:
    """Keys by id; the newest (last added) encrypts, any known one decrypts."""

    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        if current not in keys:
            raise UnknownKeyError(f"current key id {current!r} is not in the keyring")
        for key_id, key in keys.items():
            if len(key) != KEY_BYTES:
                raise CryptoError(f"key {key_id!r} must be {KEY_BYTES} bytes")
        self._keys = dict(keys)
        self.current = current

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def seal(self, plaintext: bytes, associated_data: bytes) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(self._keys[self.current]).encrypt(nonce, plaintext, associated_data)
        return Sealed(self.current, nonce, ciphertext)

    def open(self, sealed: Sealed, associated_data: bytes) -> bytes:
        key = self._keys.get(sealed.key_id)
        if key is None:
            raise UnknownKeyError(
                f"record is encrypted under key id {sealed.key_id!r}, which the keyring "
                f"does not hold (known: {', '.join(self._keys)})"
            )
        try:
            return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, associated_data)
        except InvalidTag as exc:
            raise DecryptionError(f"record under key id {sealed.key_id!r} failed authentication") from exc

    def to_json(self) -> str:
        return json.dumps(
            {
                "current": self.current,
                "keys": {k: base64.b64encode(v).decode() for k, v in self._keys.items()},
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Keyring:
        data = json.loads(text)
        keys = {k: base64.b64decode(v) for k, v in data["keys"].items()}
        return cls(keys, data["current"])

    @classmethod
    def generate(cls, key_id: str | None = None) -> Keyring:
        key_id = key_id or f"k{secrets.token_hex(4)}"
        return cls({key_id: AESGCM.generate_key(bit_length=256)}, key_id)


class Sealer(Protocol):
    """What stores need of a keyring."""

    @property
    def current(self) -> str: ...

    def seal(self, plaintext: bytes, associated_data: bytes) -> Sealed: ...

    def open(self, sealed: Sealed, associated_data: bytes) -> bytes: ...


def _write_private(path: Path, text: str) -> None:
    """Write atomically with mode 0600: a reader never sees half a keyring."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class KeyringFile:
    """A keyring kept in a file, re-read when the file changes, so a rotation reaches
    running services without a restart (checked at most once a second, and at once when a
    record names a key id not yet known)."""

    RECHECK_S = 1.0

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keyring = self._read()
        self._checked = time.monotonic()

    def _read(self) -> Keyring:
        self._mtime = self.path.stat().st_mtime_ns
        return Keyring.from_json(self.path.read_text())

    def _fresh(self) -> Keyring:
        if time.monotonic() - self._checked > self.RECHECK_S:
            self._checked = time.monotonic()
            if self.path.stat().st_mtime_ns != self._mtime:
                self._keyring = self._read()
        return self._keyring

    @property
    def current(self) -> str:
        return self._fresh().current

    def seal(self, plaintext: bytes, associated_data: bytes) -> Sealed:
        return self._fresh().seal(plaintext, associated_data)

    def open(self, sealed: Sealed, associated_data: bytes) -> bytes:
        try:
            return self._fresh().open(sealed, associated_data)
        except UnknownKeyError:
            self._keyring = self._read()
            return self._keyring.open(sealed, associated_data)


def load_or_create_keyring(path: Path) -> KeyringFile:
    """The keyring file; created (mode 0600) with one key when it does not exist yet."""
    if not path.exists():
        try:
            _write_private_new(path, Keyring.generate().to_json())
        except FileExistsError:
            pass  # another service created it first
    return KeyringFile(path)


def _write_private_new(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def add_key(path: Path) -> str:
    """Add a new key to the keyring file and make it the one that encrypts; returns its id."""
    keyring = Keyring.from_json(path.read_text())
    fresh = Keyring.generate()
    keys = {k: keyring._keys[k] for k in keyring.key_ids}
    keys[fresh.current] = fresh._keys[fresh.current]
    _write_private(path, Keyring(keys, fresh.current).to_json())
    return fresh.current
