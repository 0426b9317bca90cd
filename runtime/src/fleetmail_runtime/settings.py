"""Settings every service shares, read from `FLEETMAIL_*` once at start-up and passed down."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .identity_endpoints import DEFAULT_IDENTITY_ORIGINS
from .outbound import OutboundPolicy


def settings_config(prefix: str) -> SettingsConfigDict:
    """Settings from `<prefix><NAME>` environment variables, or from files: with
    `FLEETMAIL_SECRETS_DIR=/run/secrets`, a file named like the variable in lower case
    (`/run/secrets/fleetmail_gateway_admin_api_key`) holds the value — how container
    platforms hand out secrets without putting them in the environment."""
    return SettingsConfigDict(
        env_prefix=prefix, extra="ignore", secrets_dir=os.environ.get("FLEETMAIL_SECRETS_DIR") or None
    )


class CommonSettings(BaseSettings):
    """Settings shared by all services (environment prefix `FLEETMAIL_`)."""

    model_config = settings_config("FLEETMAIL_")

    nats_url: str = Field(default="nats://127.0.0.1:4222", description="NATS server URL(s), comma-separated")
    nats_user: str | None = Field(default=None, description="NATS user (deploy/nats/accounts.conf)")
    nats_password: SecretStr | None = Field(default=None, description="NATS password")
    nats_ca_file: Path | None = Field(default=None, description="CA bundle for NATS over TLS")
    declare_streams: bool = Field(
        default=True,
        description="Create or update streams and buckets at start; false where a provisioner "
        "did it and the service's NATS user may not (production)",
    )
    mongodb_uri: SecretStr = Field(
        default=SecretStr("mongodb://127.0.0.1:27017/?directConnection=true"),
        description="MongoDB connection string",
    )
    data_dir: Path = Field(default=Path(".fleetmail"), description="Local data directory")
    keyring_file: Path | None = Field(
        default=None,
        description="Encryption keyring (JSON, key id → base64 key); default <data_dir>/keyring.json",
    )
    log_level: str = Field(default="INFO")
    log_format: Literal["json", "text"] = Field(default="json")
    otel_exporter: Literal["none", "console", "otlp"] = Field(default="none")
    otel_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP base URL of a collector (e.g. http://collector:4318); /v1/traces and "
        "/v1/metrics are appended",
    )
    otel_sampling_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    otel_metrics: Literal["auto", "otlp", "none"] = Field(
        default="auto",
        description="Metrics pushed over OTLP: auto (when traces go to a collector and there is no "
        "scrape endpoint), otlp (always, with the otlp exporter's endpoint), none",
    )
    otel_metrics_interval_s: int = Field(default=15, gt=0, description="OTLP metrics push interval")
    metrics_port: int = Field(default=0, ge=0, description="Prometheus scrape endpoint port; 0: none")
    metrics_host: str = Field(default="127.0.0.1", description="Address the scrape endpoint binds")
    metrics_poll_s: float = Field(default=5.0, gt=0, description="How often gauges read their source")
    jobs_duplicate_window_s: float = Field(default=120.0, gt=0)
    events_max_age_days: float = Field(default=7.0, gt=0)
    declare_timeout_s: float = Field(
        default=60.0, gt=0, description="How long to wait at start for JetStream to accept the streams"
    )
    dead_letters_max_age_days: float = Field(default=30.0, gt=0, description="How long dead letters are kept")
    stream_replicas: int = Field(
        default=1, ge=1, le=5, description="JetStream replicas of every stream and bucket (3 in a cluster)"
    )
    jobs_max_bytes: int = Field(default=-1, description="Size limit of the jobs stream; -1: none")
    events_max_bytes: int = Field(default=-1, description="Size limit of the events stream; -1: none")
    attachments_max_bytes: int = Field(
        default=10 * 1024**3,
        description="Size limit of the attachments object store (a safety net: a full store refuses "
        "new uploads, and the other streams keep working); -1: none",
    )
    attachments_max_age_days: float = Field(
        default=14.0,
        gt=0,
        description="Age at which JetStream drops an attachment whatever its job (a safety net "
        "behind the deletion after delivery and the sweep); above dead_letter_retention_days",
    )
    dead_letter_retention_days: float = Field(
        default=7.0,
        gt=0,
        description="How long a dead letter's documents are kept, so that it can be resent; a "
        "resend after that is refused (410) and the dead letter stays listed",
    )
    identity_allowed_origins: tuple[str, ...] = Field(
        default=DEFAULT_IDENTITY_ORIGINS,
        description="Identity endpoints a tenant's settings may name (JSON list of https origins): "
        "job-gateway refuses others, token-service never calls them",
    )

    outbound_allowed_ranges: tuple[str, ...] = Field(
        default=(),
        description="Special-purpose ranges (JSON list of CIDRs) that destinations a tenant names — "
        "webhooks, its SMTP server, its proxy — may be in; none by default: loopback, link-local, "
        "private and other special addresses are refused",
    )

    @field_validator("outbound_allowed_ranges")
    @classmethod
    def _ranges(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        OutboundPolicy.of(value)  # a range that is not a CIDR stops the service at start
        return value

    def outbound_policy(self) -> OutboundPolicy:
        return OutboundPolicy.of(self.outbound_allowed_ranges)

    @model_validator(mode="after")
    def _attachments_outlive_dead_letters(self) -> CommonSettings:
        if self.attachments_max_age_days <= self.dead_letter_retention_days:
            raise ValueError(
                "attachments_max_age_days must be above dead_letter_retention_days: the store's "
                "age limit would drop a dead letter's documents before its retention ends"
            )
        return self

    def keyring_path(self) -> Path:
        return self.keyring_file or self.data_dir / "keyring.json"
