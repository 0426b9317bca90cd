"""A tenant's secrets in MongoDB, each sealed with AES-256-GCM under tenant + field.

One document per tenant. The Microsoft client secret and the Google service account key
are what app-only grants and confidential clients need; the SMTP username and password are
what mail-service uses for a tenant with OAuth 2.0 off. A ciphertext is bound to its
tenant and field by the associated data, so one copied elsewhere does not open.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fleetmail_contracts.credentials import CredentialsView, SetCredentials
from fleetmail_runtime.crypto import Sealed, Sealer
from pymongo import AsyncMongoClient

from ..errors import ConfigurationError
from .mongo import store_errors

SECRET_FIELDS = (
    "microsoft_client_secret",
    "google_client_secret",
    "google_service_account",
    "smtp_password",
    "webhook_secret",
)
SERVICE_ACCOUNT_KEYS = ("client_email", "private_key", "token_uri")
SERVICE_ACCOUNT_SETTING = "google_service_account in the tenant's credentials"


@dataclass(frozen=True)
class TenantSecrets:
    tenant_id: str
    microsoft_client_secret: str | None = field(default=None, repr=False)
    google_client_secret: str | None = field(default=None, repr=False)
    google_service_account: dict[str, Any] | None = field(default=None, repr=False)
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)


def check_service_account(info: dict[str, Any]) -> None:
    """A Google service account key as Google Cloud exports it, or a clear error."""
    if info.get("type") != "service_account":
        raise ConfigurationError(
            'the Google key must be a service account key ("type": "service_account")',
            setting=SERVICE_ACCOUNT_SETTING,
        )
    missing = [k for k in SERVICE_ACCOUNT_KEYS if not info.get(k)]
    if missing:
        raise ConfigurationError(
            f"the Google service account key lacks {', '.join(missing)}", setting=SERVICE_ACCOUNT_SETTING
        )


def check_not_contradictory(request: SetCredentials) -> None:
    """A field is given or cleared, not both: which of the two was meant cannot be guessed."""
    given = request.model_dump(exclude_none=True, exclude={"tenant_id", "clear"})
    for name in request.clear:
        if name in given:
            raise ConfigurationError(
                f"{name} is both given and listed in clear: give it or clear it, not both",
                setting=name,
            )


class CredentialStore:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str, keyring: Sealer) -> None:
        self._credentials = client[database]["credentials"]
        self._keyring = keyring

    def _aad(self, tenant_id: str, name: str) -> bytes:
        return f"credentials|{tenant_id}|{name}".encode()

    def _seal(self, tenant_id: str, name: str, value: str) -> dict[str, object]:
        return self._keyring.seal(value.encode(), self._aad(tenant_id, name)).to_document()

    def _open(self, tenant_id: str, name: str, document: Any) -> str | None:
        if not document:
            return None
        return self._keyring.open(Sealed.from_document(document), self._aad(tenant_id, name)).decode()

    @store_errors("store a tenant's credentials")
    async def set(self, request: SetCredentials, now: datetime) -> CredentialsView:
        check_not_contradictory(request)
        if request.google_service_account is not None:
            check_service_account(request.google_service_account)
        tenant_id = request.tenant_id
        update: dict[str, Any] = {"updated_at": now}
        if request.microsoft_client_secret is not None:
            update["microsoft_client_secret"] = self._seal(
                tenant_id, "microsoft_client_secret", request.microsoft_client_secret
            )
        if request.google_client_secret is not None:
            update["google_client_secret"] = self._seal(
                tenant_id, "google_client_secret", request.google_client_secret
            )
        if request.google_service_account is not None:
            account = request.google_service_account
            update["google_service_account"] = self._seal(
                tenant_id, "google_service_account", json.dumps(account)
            )
            update["google_service_account_email"] = account["client_email"]
        if request.smtp_username is not None:
            update["smtp_username"] = request.smtp_username
        if request.smtp_password is not None:
            update["smtp_password"] = self._seal(tenant_id, "smtp_password", request.smtp_password)
        if request.webhook_secret is not None:
            update["webhook_secret"] = self._seal(tenant_id, "webhook_secret", request.webhook_secret)
        unset: dict[str, str] = {name: "" for name in request.clear}
        if "google_service_account" in request.clear:
            unset["google_service_account_email"] = ""
        change: dict[str, Any] = {"$set": update}
        if unset:
            change["$unset"] = unset
        await self._credentials.update_one({"_id": tenant_id}, change, upsert=True)
        return await self.view(tenant_id)

    @store_errors("read a tenant's credentials")
    async def view(self, tenant_id: str) -> CredentialsView:
        document = await self._credentials.find_one({"_id": tenant_id}) or {}
        return CredentialsView(
            tenant_id=tenant_id,
            microsoft_client_secret=bool(document.get("microsoft_client_secret")),
            google_client_secret=bool(document.get("google_client_secret")),
            google_service_account_email=document.get("google_service_account_email"),
            smtp_username=document.get("smtp_username"),
            smtp_password=bool(document.get("smtp_password")),
            webhook_secret=bool(document.get("webhook_secret")),
            updated_at=document.get("updated_at"),
        )

    @store_errors("read a tenant's credentials")
    async def get(self, tenant_id: str) -> TenantSecrets:
        document = await self._credentials.find_one({"_id": tenant_id})
        if document is None:
            return TenantSecrets(tenant_id)
        account = self._open(tenant_id, "google_service_account", document.get("google_service_account"))
        return TenantSecrets(
            tenant_id,
            microsoft_client_secret=self._open(
                tenant_id, "microsoft_client_secret", document.get("microsoft_client_secret")
            ),
            google_client_secret=self._open(
                tenant_id, "google_client_secret", document.get("google_client_secret")
            ),
            google_service_account=json.loads(account) if account else None,
            smtp_username=document.get("smtp_username"),
            smtp_password=self._open(tenant_id, "smtp_password", document.get("smtp_password")),
            webhook_secret=self._open(tenant_id, "webhook_secret", document.get("webhook_secret")),
        )

    @store_errors("re-encrypt the credentials")
    async def reseal_all(self, on_progress: Callable[[int, int], None]) -> int:
        """Re-encrypt every secret not under the current key (part of `rotate-keys`)."""
        current = self._keyring.current
        stale = {"$or": [{f"{name}.key_id": {"$nin": [current, None]}} for name in SECRET_FIELDS]}
        total = await self._credentials.count_documents(stale)
        done = 0
        async for document in self._credentials.find(stale):
            tenant_id = document["_id"]
            update = {
                name: self._seal(tenant_id, name, value)
                for name in SECRET_FIELDS
                if (value := self._open(tenant_id, name, document.get(name))) is not None
            }
            result = await self._credentials.update_one(
                {"_id": tenant_id, "updated_at": document.get("updated_at")}, {"$set": update}
            )
            done += result.modified_count
            on_progress(done, total)
        return done
