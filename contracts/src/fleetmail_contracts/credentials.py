"""A tenant's secrets: provider app credentials and the SMTP password for OAuth-off tenants.

job-gateway takes them from an administrator and hands them to token-service, which stores
them sealed (AES-256-GCM) and is the only service that opens them. Secrets travel on the
bus only in `SetCredentials` (gateway → token-service) and `SmtpCredentialsReply`
(token-service → mail-service); their fields are excluded from `repr`. Nothing ever
answers with a secret to an administrator: `CredentialsView` says only what is set.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ._base import Contract, Timestamp
from .streams import TOKEN_RPC_PREFIX

SET_CREDENTIALS_SUBJECT = f"{TOKEN_RPC_PREFIX}credentials.set"
VIEW_CREDENTIALS_SUBJECT = f"{TOKEN_RPC_PREFIX}credentials.view"
SMTP_CREDENTIALS_SUBJECT = f"{TOKEN_RPC_PREFIX}credentials.smtp"
WEBHOOK_SECRET_SUBJECT = f"{TOKEN_RPC_PREFIX}credentials.webhook"

CredentialField = Literal[
    "microsoft_client_secret",
    "google_client_secret",
    "google_service_account",
    "smtp_username",
    "smtp_password",
    "webhook_secret",
]


class SetCredentials(Contract):
    """Fields given replace what is stored; fields named in `clear` are removed."""

    tenant_id: str = Field(min_length=1, max_length=64)
    microsoft_client_secret: str | None = Field(
        default=None, repr=False, max_length=1024, description="Entra app client secret"
    )
    google_client_secret: str | None = Field(
        default=None,
        repr=False,
        max_length=1024,
        description="The secret of the tenant's own Google OAuth client (identity.client_id)",
    )
    google_service_account: dict[str, Any] | None = Field(
        default=None,
        repr=False,
        description="The service account's JSON key (domain-wide delegation), as Google Cloud exports it",
    )
    smtp_username: str | None = Field(default=None, max_length=320)
    smtp_password: str | None = Field(default=None, repr=False, max_length=1024)
    webhook_secret: str | None = Field(
        default=None,
        repr=False,
        min_length=16,
        max_length=1024,
        description="Key of the HMAC-SHA256 signature on the tenant's alert webhooks",
    )
    clear: tuple[CredentialField, ...] = ()


class ViewCredentials(Contract):
    tenant_id: str


class CredentialsView(Contract):
    """What is set, never the secrets themselves."""

    tenant_id: str
    microsoft_client_secret: bool = False
    google_client_secret: bool = False
    google_service_account_email: str | None = None
    smtp_username: str | None = None
    smtp_password: bool = False
    webhook_secret: bool = False
    updated_at: Timestamp | None = None
    error: str | None = None


class SmtpCredentialsRequest(Contract):
    tenant_id: str


class SmtpCredentialsReply(Contract):
    """SMTP AUTH PLAIN/LOGIN for a tenant with OAuth 2.0 off; both None: send without AUTH."""

    username: str | None = None
    password: str | None = Field(default=None, repr=False)


class WebhookSecretRequest(Contract):
    tenant_id: str


class WebhookSecretReply(Contract):
    """For notifier only: the key its webhook signatures use; None: none stored."""

    secret: str | None = Field(default=None, repr=False)
