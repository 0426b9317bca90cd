"""token-service settings (environment prefix `FLEETMAIL_TOKEN_`)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fleetmail_contracts.tokens import Provider, TokenResource
from fleetmail_contracts.transports import DELEGATED_SCOPES
from fleetmail_runtime.settings import CommonSettings, settings_config
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings

from .adapters.http import SERVICE_PROXY_SETTING, proxy_form_refusal


class TokenSettings(BaseSettings):
    # A refused value is never echoed: the proxy URL and the secrets may carry credentials.
    model_config = settings_config("FLEETMAIL_TOKEN_") | {"hide_input_in_errors": True}

    common: CommonSettings = Field(default_factory=CommonSettings)
    database: str = Field(default="fleetmail_tokens", description="MongoDB database of token-service")
    microsoft_authority_host: str = Field(
        default="https://login.microsoftonline.com",
        description="Microsoft identity platform host (national clouds, emulator)",
    )
    microsoft_directory: str = Field(default="organizations", description="Entra tenant id or domain")
    microsoft_client_id: str | None = Field(default=None, description="Entra app (client) id")
    microsoft_client_secret: SecretStr | None = Field(default=None)
    microsoft_scopes: tuple[str, ...] = Field(
        default=DELEGATED_SCOPES[(Provider.MICROSOFT, TokenResource.SMTP)],
        description="Delegated scopes for SMTP (transport smtp)",
    )
    microsoft_graph_scopes: tuple[str, ...] = Field(
        default=DELEGATED_SCOPES[(Provider.MICROSOFT, TokenResource.GRAPH)],
        description="Delegated scopes for Microsoft Graph (transport graph): drafts and the "
        "Sent Items check need Mail.ReadWrite",
    )
    microsoft_graph_app_only_scope: str = Field(
        default="https://graph.microsoft.com/.default",
        description="Client-credentials scope for app-only sending through Graph (Mail.Send)",
    )
    microsoft_app_only_scope: str = Field(
        default="https://outlook.office365.com/.default",
        description="Client-credentials scope for app-only sending (SMTP.SendAsApp)",
    )
    google_client_id: str | None = Field(default=None, description="Google OAuth client id")
    google_client_secret: SecretStr | None = Field(default=None)
    google_auth_uri: str = Field(default="https://accounts.google.com/o/oauth2/v2/auth")
    google_token_uri: str = Field(default="https://oauth2.googleapis.com/token")
    google_revoke_uri: str = Field(default="https://oauth2.googleapis.com/revoke")
    google_scopes: tuple[str, ...] = ("https://mail.google.com/", "openid", "email")
    google_app_only_scopes: tuple[str, ...] = Field(
        default=("https://mail.google.com/",),
        description="Scopes a service account asks for through domain-wide delegation",
    )
    google_gmail_api_scopes: tuple[str, ...] = Field(
        default=(*DELEGATED_SCOPES[(Provider.GOOGLE, TokenResource.GMAIL_API)], "openid", "email"),
        description="Scopes a sign-in asks for when the tenant sends through the Gmail API",
    )
    google_gmail_api_app_only_scopes: tuple[str, ...] = Field(
        default=DELEGATED_SCOPES[(Provider.GOOGLE, TokenResource.GMAIL_API)],
        description="Scopes a service account asks for when the tenant sends through the Gmail API",
    )
    device_poll_grace_s: float = Field(
        default=10,
        gt=0,
        description="A device-code sign-in is taken over by another replica this long after its "
        "poller missed a poll (the poller died)",
    )
    device_poll_check_s: float = Field(
        default=5, gt=0, description="How often a replica looks for device-code sign-ins to take over"
    )
    acquisition_ttl_s: float = Field(
        default=900, gt=0, description="How long an authorization-code sign-in may take"
    )
    ca_bundle: Path | None = Field(
        default=None, description="CA file for the identity providers' HTTPS (emulator CA)"
    )
    refresh_margin_s: float = Field(
        default=600, ge=0, description="Refresh when less than this remains (Exchange HVE: 10 min)"
    )
    http_timeout_s: float = Field(default=10, gt=0)
    proxy_url: SecretStr | None = Field(
        default=None,
        description="Proxy (http[s]://[user:password@]host:port) for every call to the identity "
        "providers of tenants without a proxy_url of their own; none: direct",
    )
    keepalive_interval_s: float = Field(default=3600, gt=0, description="How often the keep-alive sweep runs")
    keepalive_idle_s: float = Field(
        default=14 * 24 * 3600,
        gt=0,
        description="Redeem grants idle longer than this (Microsoft kills them after 90 idle days)",
    )
    use_record_interval_s: float = Field(
        default=3600,
        gt=0,
        description="A login user's use of their token is written at most this often per replica "
        "(their idle window, the tenant's user_token_idle_days, counts from it)",
    )
    expiring_horizon_s: float = Field(
        default=14 * 24 * 3600, gt=0, description="Announce a grant's unpreventable death this early"
    )
    lease_ttl_s: float = Field(
        default=30, gt=0, description="How long a replica may hold a grant's refresh lease"
    )
    lease_poll_s: float = Field(default=0.05, gt=0, description="How often a waiting replica re-reads")
    rpc_concurrency: int = Field(default=64, ge=1, description="Token requests handled at once")
    fault_exit_after_redeem: bool = Field(
        default=False,
        description="Tests only: exit between the provider's answer and the write",
    )

    @model_validator(mode="after")
    def _proxy_allowed(self) -> TokenSettings:
        """A malformed service proxy, or one the outbound rule refuses by its very address,
        stops the service at start rather than failing every sign-in and refresh."""
        if self.proxy_url is None:
            return self
        url = self.proxy_url.get_secret_value()
        why = proxy_form_refusal(url)
        if why is None:
            why = self.common.outbound_policy().refusal_of_host(urlsplit(url.strip()).hostname or "")
        if why is not None:
            raise ValueError(f"{SERVICE_PROXY_SETTING} is refused: {why}")
        return self
