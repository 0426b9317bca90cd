"""The token client: token-service asked over the bus (request/reply)."""

from __future__ import annotations

from fleetmail_contracts.credentials import (
    SMTP_CREDENTIALS_SUBJECT,
    SmtpCredentialsReply,
    SmtpCredentialsRequest,
)
from fleetmail_contracts.tokens import (
    ACCESS_TOKEN_SUBJECT,
    AccessTokenReply,
    AccessTokenRequest,
    Principal,
    TokenResource,
)
from fleetmail_runtime.bus import Bus, BusUnavailable

from ..errors import TokenUnavailable


def _unanswered(exc: BusUnavailable) -> TokenUnavailable:
    cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else str(exc)
    return TokenUnavailable(f"token-service did not answer: {cause}")


class BusTokenClient:
    def __init__(self, bus: Bus, timeout_s: float) -> None:
        self.bus = bus
        self.timeout_s = timeout_s

    async def access_token(
        self,
        principal: Principal,
        *,
        force_refresh: bool,
        job_id: str | None,
        resource: TokenResource = TokenResource.SMTP,
    ) -> AccessTokenReply:
        request = AccessTokenRequest(
            principal=principal, force_refresh=force_refresh, job_id=job_id, resource=resource
        )
        try:
            reply: AccessTokenReply = await self.bus.request(
                request, ACCESS_TOKEN_SUBJECT, AccessTokenReply, timeout_s=self.timeout_s
            )
        except BusUnavailable as exc:
            raise _unanswered(exc) from exc
        return reply

    async def smtp_credentials(self, tenant_id: str) -> SmtpCredentialsReply:
        request = SmtpCredentialsRequest(tenant_id=tenant_id)
        try:
            reply: SmtpCredentialsReply = await self.bus.request(
                request, SMTP_CREDENTIALS_SUBJECT, SmtpCredentialsReply, timeout_s=self.timeout_s
            )
        except BusUnavailable as exc:
            raise _unanswered(exc) from exc
        return reply
