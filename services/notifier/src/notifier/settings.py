"""notifier settings (environment prefix `FLEETMAIL_NOTIFIER_`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from fleetmail_runtime.settings import CommonSettings, settings_config
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings


class NotifierSettings(BaseSettings):
    model_config = settings_config("FLEETMAIL_NOTIFIER_")

    common: CommonSettings = Field(default_factory=CommonSettings)
    database: str = Field(default="fleetmail_notifier", description="MongoDB database of notifier")
    reload_open_s: float = Field(
        default=30, gt=0, description="How often the set of open alerts is re-read (other replicas' changes)"
    )
    webhook_dispatch_s: float = Field(default=0.5, gt=0, description="How often due webhook calls are sent")
    webhook_max_attempts: int = Field(
        default=10, ge=1, description="Calls of one notice before it is marked failed"
    )
    webhook_breaker_failures: int = Field(
        default=5, ge=1, description="Consecutive failures that open an endpoint's circuit"
    )
    webhook_breaker_cooldown_s: float = Field(default=60, gt=0, description="How long an open circuit rests")
    webhook_per_minute: int = Field(
        default=30, ge=1, description="Most calls per endpoint and minute (throttle)"
    )
    provider_unreachable_after_s: float = Field(
        default=900, gt=0, description="A provider failing this long (refreshes keep failing) raises an alert"
    )
    condition_check_s: float = Field(default=30, gt=0, description="How often lasting conditions are checked")
    failure_rate_threshold: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Share of a tenant's recent deliveries failing that raises an alert",
    )
    failure_rate_window: int = Field(
        default=100, ge=1, description="Recent deliveries the rate is taken over"
    )
    failure_rate_min_samples: int = Field(
        default=20, ge=1, description="Deliveries needed before judging the rate"
    )
    smtp_host: str | None = Field(
        default=None,
        description="The relay alert e-mails go through (never a tenant's grant); unset: the e-mail channel is off",
    )
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "implicit_tls", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = Field(default="fleetmail@localhost", description="From address of alert e-mails")
    smtp_ca_bundle: Path | None = Field(default=None, description="Extra CA for the relay's certificate")
    grant_scan_s: float = Field(
        default=3600, gt=0, description="How often every grant's predicted death is checked (missed events)"
    )
    expiring_horizon_s: float = Field(
        default=14 * 24 * 3600, gt=0, description="Alert when a grant's predicted death is this close"
    )
