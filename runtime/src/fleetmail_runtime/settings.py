"""Settings every service shares, read from `FLEETMAIL_*` once at start-up and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Settings shared by all services (environment prefix `FLEETMAIL_`)."""

    model_config = SettingsConfigDict(env_prefix="FLEETMAIL_", extra="ignore")

    nats_url: str = Field(default="nats://127.0.0.1:4222", description="NATS server URL(s)")
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
    otel_endpoint: str | None = Field(default=None, description="OTLP endpoint")
    otel_sampling_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    jobs_duplicate_window_s: float = Field(default=120.0, gt=0)
    events_max_age_days: float = Field(default=7.0, gt=0)

    def keyring_path(self) -> Path:
        return self.keyring_file or self.data_dir / "keyring.json"
