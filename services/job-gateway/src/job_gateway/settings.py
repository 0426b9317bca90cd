"""job-gateway settings (environment prefix `FLEETMAIL_GATEWAY_`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from fleetmail_runtime.settings import CommonSettings, settings_config
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings


class GatewaySettings(BaseSettings):
    model_config = settings_config("FLEETMAIL_GATEWAY_")

    common: CommonSettings = Field(default_factory=CommonSettings)
    host: str = Field(default="127.0.0.1", description="HTTP listen address")
    port: int = Field(default=8080, description="HTTP listen port")
    http_keep_alive_s: int = Field(
        default=75,
        ge=1,
        description=(
            "How long an idle HTTP connection is kept open; longer than a load balancer's idle "
            "timeout (60 s on most), or a request sent as the gateway closes the connection is lost"
        ),
    )
    public_url: str = Field(
        default="http://127.0.0.1:8080",
        description="How browsers reach this gateway: the OAuth redirect URI is <public_url>/oauth/callback",
    )
    database: str = Field(default="fleetmail_gateway")
    admin_api_key: SecretStr | None = Field(
        default=None,
        description="Bearer key of the fleet administrator; default: generated into <data_dir>/admin-api-key",
    )
    device_secret_key: SecretStr | None = Field(
        default=None,
        description="HMAC key for device secrets; default: generated into <data_dir>/device-secret-key",
    )
    api_key_hash_key: SecretStr | None = Field(
        default=None,
        description="HMAC key for administrators' API keys; default: generated into <data_dir>/api-key-hash-key",
    )
    max_attachment_bytes: int = Field(default=30 * 1024 * 1024, gt=0)
    max_attachments: int = Field(
        default=20, ge=1, description="Attachments one job may carry (HTTP file parts, SMTP attachments)"
    )
    max_submission_bytes: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="Size of one submission: an HTTP request body, counted while it streams in "
        "(refused with 413 once passed); over SMTP, the sum of a message's attachments",
    )
    tenant_bytes_in_flight: int = Field(
        default=256 * 1024 * 1024,
        gt=0,
        description="Bytes of one tenant's submissions this gateway receives and stores at once; "
        "a submission beyond it waits (507 + Retry-After, SMTP 452 4.3.1). At least max_submission_bytes",
    )
    device_bytes_in_flight: int | None = Field(
        default=None,
        gt=0,
        description="The part of its tenant's bytes in flight one device may hold, so that one device "
        "cannot take the tenant's whole share; default: half the tenant's, but at least max_submission_bytes. "
        "An SMTP message is held with its decoded parts (about twice its attachments' size)",
    )
    body_read_timeout_s: float = Field(
        default=30,
        gt=0,
        description="An HTTP request body from which nothing arrives for this long is refused (408) "
        "and what it held is released",
    )
    body_read_deadline_s: float = Field(
        default=900,
        gt=0,
        description="The longest an HTTP request body may take to arrive, however steadily; then 408",
    )
    max_recipients: int = Field(default=100, gt=0)
    publish_timeout_s: float = Field(default=5, gt=0)
    token_rpc_timeout_s: float = Field(default=15, gt=0)
    smtp_host: str | None = Field(default=None, description="SMTP listen address; default: the HTTP one")
    smtp_hostname: str = Field(default="fleetmail", description="Name the SMTP listener greets with")
    smtp_public_host: str | None = Field(
        default=None,
        max_length=253,
        description="The SMTP server address devices are told to use; default: public_url's host",
    )
    smtp_starttls_port: int = Field(default=587, ge=0, description="Submission with STARTTLS; 0: off")
    smtp_tls_port: int = Field(default=465, ge=0, description="Submission with implicit TLS; 0: off")
    smtp_plain_port: int = Field(
        default=0, ge=0, description="Submission without TLS, for a LAN only (e.g. 25); 0: off (default)"
    )
    smtp_tls_cert: Path | None = Field(
        default=None,
        description="Certificate (PEM) of the SMTP listener; without it only the plain port opens",
    )
    smtp_tls_key: Path | None = Field(default=None, description="Its private key (PEM)")
    smtp_min_tls: Literal["1.0", "1.1", "1.2"] = Field(
        default="1.2",
        description="Oldest TLS a device may use; 1.0/1.1 only for devices that need it. TLS 1.2 "
        "and 1.3 are always both negotiated: a TLS 1.3-only listener would shut out the devices "
        "that speak 1.2",
    )
    smtp_max_connections: int = Field(
        default=1000, gt=0, description="SMTP connections open at once, all ports; more are refused with 421"
    )
    smtp_max_connections_per_address: int = Field(
        default=100,
        gt=0,
        description="SMTP connections open at once from one source: an IPv4 address or an IPv6 /64",
    )
    device_session_users_max: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Users a device lists between auto resets, for Auto Delete and for the grants a "
        "message over SMTP may use (read at each AUTH, sent whole at auto reset); more are not "
        "noted, logged",
    )
    smtp_tls_handshake_timeout_s: float = Field(
        default=10, gt=0, description="Time a connection to the implicit-TLS port has to finish its handshake"
    )
    smtp_sign_in_idle_timeout_s: float = Field(
        default=30,
        gt=0,
        description="A connection not signed in yet (AUTH, or MAIL FROM from an allowlisted address) "
        "silent this long is closed",
    )
    smtp_sign_in_within_s: float = Field(
        default=120,
        gt=0,
        description="A connection must sign in within this long of its accept, however busy, or it is closed",
    )
    smtp_idle_timeout_s: float = Field(
        default=120,
        gt=0,
        description="A connection silent this long (between commands, or within DATA) is closed",
    )
    smtp_data_timeout_s: float = Field(
        default=900, gt=0, description="The longest a message's DATA may take to arrive, however steadily"
    )
    smtp_command_call_limit: int = Field(
        default=1000, gt=0, description="Times one connection may send the same command before it is closed"
    )
    smtp_spool_bytes: int = Field(
        default=256 * 1024,
        gt=0,
        description="A message (and each part of it) above this size is held in a temporary file, not in memory",
    )
    device_rate_per_s: float = Field(
        default=20, gt=0, description="Jobs per second one device may submit, after its burst"
    )
    device_rate_burst: int = Field(default=100, ge=1, description="Jobs a device may submit at once")
    min_allowlist_prefix_v4: int = Field(
        default=32,
        ge=1,
        le=32,
        description="Widest IPv4 range a device's SMTP allowlist may hold (32: single addresses; never /0)",
    )
    min_allowlist_prefix_v6: int = Field(
        default=128,
        ge=1,
        le=128,
        description="Widest IPv6 range a device's SMTP allowlist may hold (128: single addresses; never /0)",
    )
    overview_expiring_days: float = Field(
        default=14,
        gt=0,
        description="The fleet overview shows an acquired administrator token as expiring when "
        "token-service predicts its death (no keep-alive can prevent it) within this many days",
    )
    overview_max_age_s: float = Field(
        default=5,
        ge=0,
        description="The fleet overview's figures are asked again (token-service, the notifier, "
        "three counts) once older than this: one asking serves every administrator looking "
        "meanwhile. 0: asked on every page",
    )
    overview_page_size: int = Field(
        default=50, ge=1, le=1000, description="Tenants on one overview page unless asked"
    )
    allowlist_refresh_s: float = Field(
        default=5,
        gt=0,
        description="How often the in-memory allowlist index is read again (changes made through other replicas)",
    )
    console_session_ttl_s: int = Field(
        default=8 * 3600,
        ge=60,
        description="How long a console sign-in lasts (the cookie and the stored session expire together)",
    )
    allowed_attachment_types: tuple[str, ...] = Field(
        default=(
            "application/pdf",
            "image/tiff",
            "image/jpeg",
            "image/png",
            "application/vnd.ms-xpsdocument",
            "application/oxps",
            "text/plain",
            "text/csv",
            "application/octet-stream",
        ),
        description='What devices send (scans, faxes, reports); ["*"] accepts any type',
    )

    @property
    def device_share(self) -> int:
        """The bytes in flight one device may hold (`device_bytes_in_flight` or its default)."""
        if self.device_bytes_in_flight is not None:
            return self.device_bytes_in_flight
        return min(
            max(self.tenant_bytes_in_flight // 2, self.max_submission_bytes), self.tenant_bytes_in_flight
        )

    @field_validator("smtp_min_tls", mode="before")
    @classmethod
    def _never_tls_1_3_only(cls, value: object) -> object:
        if str(value).strip() == "1.3":
            raise ValueError(
                "FLEETMAIL_GATEWAY_SMTP_MIN_TLS=1.3 would make the SMTP listener TLS 1.3-only; "
                "devices negotiate TLS 1.2 or 1.3: set 1.2 (the default)"
            )
        return value

    @model_validator(mode="after")
    def _one_submission_fits_in_flight(self) -> Self:
        # Otherwise a submission within the size limit could never be taken in, and its 507
        # would promise a retry that cannot succeed.
        if self.tenant_bytes_in_flight < self.max_submission_bytes:
            raise ValueError("tenant_bytes_in_flight must be at least max_submission_bytes")
        if not self.max_submission_bytes <= self.device_share <= self.tenant_bytes_in_flight:
            raise ValueError(
                "device_bytes_in_flight must be at least max_submission_bytes and at most tenant_bytes_in_flight"
            )
        return self
