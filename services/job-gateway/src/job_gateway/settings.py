"""job-gateway settings (environment prefix `FLEETMAIL_GATEWAY_`)."""

from __future__ import annotations

from fleetmail_runtime.settings import CommonSettings
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLEETMAIL_GATEWAY_", extra="ignore")

    common: CommonSettings = Field(default_factory=CommonSettings)
    host: str = Field(default="127.0.0.1", description="HTTP listen address")
    port: int = Field(default=8080, description="HTTP listen port")
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
    max_attachment_bytes: int = Field(default=30 * 1024 * 1024, gt=0)
    max_recipients: int = Field(default=100, gt=0)
    publish_timeout_s: float = Field(default=5, gt=0)
    token_rpc_timeout_s: float = Field(default=15, gt=0)
