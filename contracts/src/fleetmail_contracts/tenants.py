"""Tenant settings: owned by job-gateway, shared through the `fleetmail_tenants` KV bucket.

Defaults follow the device manual: OAuth 2.0 off, provider Microsoft, Auto Delete off.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ._base import Contract, Timestamp
from .addresses import is_address
from .streams import TENANT_EVENT_PREFIX
from .tokens import Provider
from .transports import Transport, transport_refusal

MAX_SEND_AS_USERS = 200
MAX_SEND_AS_ADDRESSES = 10
"""Bounds of a tenant's send-as list: the whole settings travel in one KV entry."""


class FromPolicy(StrEnum):
    """The device's [Change the "From" Address] setting."""

    ADMINISTRATOR_ADDRESS = "administrator_address"
    LOGIN_USER_ADDRESS = "login_user_address"
    ALLOW = "allow"


class SmtpSecurity(StrEnum):
    STARTTLS = "starttls"
    IMPLICIT_TLS = "implicit_tls"
    NONE = "none"


class IdentitySettings(Contract):
    """Where a tenant's tokens come from: configuration, so national clouds and emulators work."""

    authority_host: str | None = Field(
        default=None, description="e.g. https://login.microsoftonline.com; None: service default"
    )
    directory: str | None = Field(
        default=None, description="Entra tenant id or domain; None: service default"
    )
    client_id: str | None = None
    token_uri: str | None = Field(default=None, description="Google token endpoint override")
    google_testing_mode: bool = False
    app_only: bool = Field(
        default=False,
        description=(
            "Send with the app's own identity, no user consent that can lapse: Microsoft client "
            "credentials (SMTP.SendAsApp) or a Google service account with domain-wide delegation"
        ),
    )


class SmtpSettings(Contract):
    host: str
    port: int = Field(ge=1, le=65535)
    security: SmtpSecurity = SmtpSecurity.STARTTLS
    ca_pem: str | None = Field(
        default=None,
        max_length=65536,
        description="PEM of a CA trusted for this server besides the system's (a private CA); "
        "certificates are always verified",
    )


DEFAULT_SMTP: dict[Provider, SmtpSettings] = {
    Provider.MICROSOFT: SmtpSettings(host="smtp.office365.com", port=587),
    Provider.GOOGLE: SmtpSettings(host="smtp.gmail.com", port=587),
}


class WebhookChannel(Contract):
    url: str = Field(pattern=r"^https?://", max_length=2000)
    name: str = Field(default="", max_length=200)


class NotificationSettings(Contract):
    """Where the tenant's alerts go besides the devices' information feeds. Webhook calls are
    signed with the tenant's `webhook_secret` credential (HMAC-SHA256)."""

    webhooks: tuple[WebhookChannel, ...] = Field(default=(), max_length=10)
    email_recipients: tuple[str, ...] = Field(default=(), max_length=50)
    sign_in_email: bool = Field(
        default=False,
        description="When a user's job waits for the user's sign-in, also tell the user by e-mail "
        "(From the administrator address, through the notifier's relay)",
    )


class SendingLimits(Contract):
    """The sending mailbox's limits where they differ from its provider's defaults (a mailbox
    whose administrator set another message size, a smaller quota)."""

    concurrent_submissions: int | None = Field(default=None, ge=1, le=100)
    messages_per_minute: float | None = Field(default=None, gt=0, le=100_000)
    recipients_per_message: int | None = Field(default=None, ge=1, le=1000)
    max_message_bytes: int | None = Field(default=None, gt=0)
    daily_quota: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="What the mailbox may send in a rolling 24 hours: recipients for Microsoft 365 "
        "(default 10,000), messages for Gmail (default 2,000); set it only to the provider's figure "
        "for this mailbox (a consumer Gmail account's 500, a limit the provider raised)",
    )


class TenantSettings(Contract):
    tenant_id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
    display_name: str = Field(default="", max_length=200)
    oauth_enabled: bool = False
    provider: Provider = Provider.MICROSOFT
    administrator_address: str | None = None
    smtp: SmtpSettings | None = None
    transport: Transport = Field(
        default=Transport.SMTP,
        description="How the tenant's mail leaves: smtp (XOAUTH2, the device's way), graph "
        "(Microsoft Graph sendMail; provider microsoft) or gmail_api (Gmail API; provider google)",
    )
    from_policy: FromPolicy = FromPolicy.ADMINISTRATOR_ADDRESS
    auto_delete: bool = False
    user_token_idle_days: float = Field(
        default=90,
        gt=0,
        le=3650,
        description="A login user's refresh token that has not sent for this many days is deleted "
        "(the user signs in again at the device); the administrator's is kept alive regardless",
    )
    proxy_url: str | None = None
    identity: IdentitySettings = IdentitySettings()
    notifications: NotificationSettings = NotificationSettings()
    sending_limits: SendingLimits = SendingLimits()
    mail_domains: tuple[str, ...] | None = Field(
        default=None,
        max_length=100,
        description="The mail domains this tenant's people sign in from (listed by the owner key): "
        "sign-ins for other addresses are refused. None (tenants saved before the list existed): "
        "the administrator address's domain",
    )
    send_as: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        max_length=MAX_SEND_AS_USERS,
        description="Under the From policy allow: the addresses each login user may send as besides "
        "their own (user address → addresses; the user's mailbox needs Send As for them at the provider)",
    )
    revision: int = 0

    @field_validator("send_as")
    @classmethod
    def _send_as(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        checked: dict[str, tuple[str, ...]] = {}
        for user, addresses in value.items():
            if not is_address(user):
                raise ValueError(f"send_as: not an e-mail address: {user[:100]!r}")
            if len(addresses) > MAX_SEND_AS_ADDRESSES:
                raise ValueError(f"send_as[{user!r}]: at most {MAX_SEND_AS_ADDRESSES} addresses")
            for address in addresses:
                if not is_address(address):
                    raise ValueError(f"send_as[{user!r}]: not an e-mail address: {address[:100]!r}")
            key = user.casefold()
            checked[key] = tuple(dict.fromkeys((*checked.get(key, ()), *(a.casefold() for a in addresses))))
        return checked

    @model_validator(mode="after")
    def _transport_of_provider(self) -> TenantSettings:
        if (why := transport_refusal(self.transport, self.provider)) is not None:
            raise ValueError(why)
        return self

    def may_send_as(self, user: str, address: str) -> bool:
        """Whether the login user may send From this address: their own, or one listed for them."""
        wanted = address.casefold()
        return wanted == user.casefold() or wanted in self.send_as.get(user.casefold(), ())

    @field_validator("mail_domains")
    @classmethod
    def _domains(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        domains = tuple(dict.fromkeys(d.strip().lower().rstrip(".") for d in value))
        for domain in domains:
            if DOMAIN.match(domain) is None:
                raise ValueError(f"not a mail domain: {domain!r}")
        return domains

    def effective_smtp(self) -> SmtpSettings:
        return self.smtp or DEFAULT_SMTP[self.provider]

    def effective_mail_domains(self) -> tuple[str, ...]:
        """The listed mail domains; for a tenant saved before the list existed, the
        administrator address's domain (what its fleet has signed in with so far)."""
        if self.mail_domains is not None:
            return self.mail_domains
        return legacy_mail_domains(self.administrator_address)

    def accepts_sign_in(self, address: str) -> bool:
        """A person may sign in for this tenant only with an address in its mail domains."""
        return mail_domain(address) in self.effective_mail_domains()


DOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$"
)


def mail_domain(address: str) -> str:
    """The domain of an address, lower case ("" when it has none)."""
    local, at, domain = address.strip().rpartition("@")
    return domain.lower().rstrip(".") if at and local else ""


def legacy_mail_domains(administrator_address: str | None) -> tuple[str, ...]:
    domain = mail_domain(administrator_address or "")
    return (domain,) if domain else ()


class TenantSettingsChanged(Contract):
    event_id: str
    tenant_id: str
    revision: int
    occurred_at: Timestamp
    kind: Literal["settings_changed"] = "settings_changed"


def tenant_event_subject(kind: str) -> str:
    return f"{TENANT_EVENT_PREFIX}{kind}"
