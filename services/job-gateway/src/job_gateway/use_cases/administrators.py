"""Administrators: who a bearer key belongs to, and the owner's management of API keys.

The owner key (a setting, or `<data_dir>/admin-api-key`) is compared as it is; every other
key is `fmk_<key id>_<secret>`, and only a keyed hash of its secret is stored — under the
API-key hash key. A key stored before that key existed was hashed under the device secret
key: it still verifies, and its hash is made again under the API-key hash key on first use,
so from then on rotating the device secret key does not revoke it.

The console signs in with a key once (`sign_in`) and keeps, in its session, the key's id and
a fingerprint of its secret; every request `resume`s from them, so a key deleted (or an owner
key changed) ends the sessions made with it.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ..credentials import HashKey, Keys, hash_matches, keyed_hash, new_api_key, split_api_key
from ..domain import Administrator, Role
from ..errors import AdministratorUnauthorized, TenantsRequired
from ..ports import ApiKeyStore, StoredApiKey
from ..schemas import ApiKeyRequest, ApiKeyView

log = logging.getLogger("job-gateway.keys")


def _view(key: StoredApiKey, shown: str | None = None) -> ApiKeyView:
    return ApiKeyView(
        key_id=key.key_id,
        name=key.name,
        role=key.role.value,
        tenant_ids=list(key.tenant_ids) if key.tenant_ids is not None else None,
        created_at=key.created_at,
        key=shown,
    )


@dataclass(frozen=True)
class SignedIn:
    administrator: Administrator
    name: str
    """The key's name, as the console shows who is signed in."""
    fingerprint: str
    """A keyed hash of the key's secret: a session holds this, never the key."""


class Administrators:
    def __init__(
        self,
        store: ApiKeyStore,
        keys: Keys,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.keys = keys
        self.clock = clock

    async def authenticate(self, bearer: str) -> Administrator:
        """The administrator this key belongs to, or `AdministratorUnauthorized`."""
        if hmac.compare_digest(bearer.encode(), self.keys.owner_api_key.encode()):
            return Administrator("owner", Role.OWNER, None)
        parts = split_api_key(bearer)
        stored = await self.store.api_key(parts[0]) if parts is not None else None
        if parts is None or stored is None:
            raise AdministratorUnauthorized("send an administrator API key as a bearer token")
        secret = parts[1]
        if not hash_matches(self.keys.hash_key(stored.hash_key), secret, stored.secret_hash):
            raise AdministratorUnauthorized("send an administrator API key as a bearer token")
        if stored.hash_key is not HashKey.API:
            await self._rehash(stored, secret)
        # A key given no tenants (or an empty list) reaches every tenant its role may.
        return Administrator(stored.key_id, stored.role, stored.tenant_ids or None)

    async def sign_in(self, key: str) -> SignedIn:
        """The administrator this key belongs to, with what a session keeps of it."""
        admin = await self.authenticate(key)
        if admin.role is Role.OWNER:
            return SignedIn(admin, "owner", keyed_hash(self.keys.api_key_hash, key))
        return await self.resume(admin.key_id, None)

    async def resume(self, key_id: str, fingerprint: str | None) -> SignedIn:
        """The administrator of a session made with this key, if the key is still the same
        (None: any secret), or `AdministratorUnauthorized`."""
        if key_id == "owner":
            current = keyed_hash(self.keys.api_key_hash, self.keys.owner_api_key)
            if fingerprint is not None and hmac.compare_digest(current, fingerprint):
                return SignedIn(Administrator("owner", Role.OWNER, None), "owner", current)
            raise AdministratorUnauthorized("the owner key has changed: sign in again")
        stored = await self.store.api_key(key_id)
        if stored is None or (
            fingerprint is not None and not hmac.compare_digest(stored.secret_hash, fingerprint)
        ):
            raise AdministratorUnauthorized("the key was revoked: sign in again")
        admin = Administrator(stored.key_id, stored.role, stored.tenant_ids or None)
        return SignedIn(admin, stored.name, stored.secret_hash)

    async def _rehash(self, stored: StoredApiKey, secret: str) -> None:
        """Move a key hashed under the device secret key to the API-key hash key (once: the
        hash is replaced only if it is still the old one)."""
        new_hash = keyed_hash(self.keys.api_key_hash, secret)
        if await self.store.rehash_api_key(stored.key_id, stored.secret_hash, new_hash, HashKey.API):
            log.info("API key %s is now hashed under the API-key hash key", stored.key_id)

    async def create(self, request: ApiKeyRequest) -> ApiKeyView:
        """A key for a fleet administrator (read and change its tenants) or an operator (read)."""
        if request.role == "fleet_admin" and not request.tenant_ids:
            raise TenantsRequired("a fleet_admin key names its tenants")
        key_id, secret, key = new_api_key()
        stored = StoredApiKey(
            key_id=key_id,
            name=request.name,
            role=Role(request.role),
            tenant_ids=tuple(request.tenant_ids) if request.tenant_ids is not None else None,
            secret_hash=keyed_hash(self.keys.api_key_hash, secret),
            hash_key=HashKey.API,
            created_at=self.clock(),
        )
        await self.store.save_api_key(stored)
        return _view(stored, shown=key)

    async def all(self) -> list[ApiKeyView]:
        return [_view(key) for key in await self.store.list_api_keys()]

    async def delete(self, key_id: str) -> bool:
        return await self.store.delete_api_key(key_id)
