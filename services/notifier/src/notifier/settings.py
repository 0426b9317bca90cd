"""notifier settings (environment prefix `FLEETMAIL_NOTIFIER_`)."""

from __future__ import annotations

from fleetmail_runtime.settings import CommonSettings
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class NotifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLEETMAIL_NOTIFIER_", extra="ignore")

    common: CommonSettings = Field(default_factory=CommonSettings)
    database: str = Field(default="fleetmail_notifier", description="MongoDB database of notifier")
    reload_open_s: float = Field(
        default=30, gt=0, description="How often the set of open alerts is re-read (other replicas' changes)"
    )
