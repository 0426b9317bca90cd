"""The keyring, opened at start rather than when the service is built (building does no I/O)."""

from __future__ import annotations

from pathlib import Path

from fleetmail_runtime.crypto import KeyringFile, Sealed, load_or_create_keyring


class KeyringAtStart:
    """A `Sealer` over the keyring file, which `load` opens (creating it with one key if it
    does not exist yet); a use before `load` opens it then."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: KeyringFile | None = None

    async def load(self) -> None:
        self._keyring()

    def _keyring(self) -> KeyringFile:
        if self._file is None:
            self._file = load_or_create_keyring(self.path)
        return self._file

    @property
    def current(self) -> str:
        return self._keyring().current

    def seal(self, plaintext: bytes, associated_data: bytes) -> Sealed:
        return self._keyring().seal(plaintext, associated_data)

    def open(self, sealed: Sealed, associated_data: bytes) -> bytes:
        return self._keyring().open(sealed, associated_data)
