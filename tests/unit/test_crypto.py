import os
import stat

import pytest
from fleetmail_runtime.crypto import DecryptionError, Keyring, UnknownKeyError, load_or_create_keyring


def test_round_trip_with_fresh_nonce_per_write() -> None:
    keyring = Keyring.generate("k1")
    first = keyring.seal(b"refresh-token", b"tenant|microsoft|a@b.c|administrator")
    second = keyring.seal(b"refresh-token", b"tenant|microsoft|a@b.c|administrator")
    assert first.nonce != second.nonce and first.ciphertext != second.ciphertext
    assert first.key_id == "k1"
    assert keyring.open(first, b"tenant|microsoft|a@b.c|administrator") == b"refresh-token"


def test_ciphertext_is_bound_to_its_record() -> None:
    keyring = Keyring.generate()
    sealed = keyring.seal(b"secret", b"tenant-a|microsoft|a@b.c|administrator")
    with pytest.raises(DecryptionError):
        keyring.open(sealed, b"tenant-b|microsoft|a@b.c|administrator")


def test_unknown_key_id_gives_a_clear_error() -> None:
    old = Keyring.generate("old")
    sealed = old.seal(b"secret", b"ad")
    with pytest.raises(UnknownKeyError, match="key id 'old'"):
        Keyring.generate("new").open(sealed, b"ad")


def test_newest_key_encrypts_and_older_keys_still_decrypt() -> None:
    old = Keyring.generate("old")
    sealed = old.seal(b"secret", b"ad")
    combined = Keyring.from_json(old.to_json())
    rotated = Keyring({**{k: combined._keys[k] for k in combined.key_ids}, "new": os.urandom(32)}, "new")
    assert rotated.open(sealed, b"ad") == b"secret"
    assert rotated.seal(b"x", b"ad").key_id == "new"


def test_keyring_file_is_created_private(tmp_path) -> None:
    path = tmp_path / "keys" / "keyring.json"
    created = load_or_create_keyring(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_keyring(path).current == created.current
