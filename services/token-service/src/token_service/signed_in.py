"""A sign-in succeeded: store the new grant, if the right person signed in."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fleetmail_contracts.tokens import AcquisitionFlow, Principal, Provider, TokenAcquired
from fleetmail_contracts.transports import resource_of_scopes

from .domain import (
    directory_pinned,
    directory_refusal,
    identity_matches,
    predicted_death,
    signed_in_address,
)
from .errors import ConfigurationError, IdentityMismatch, OutsideTenant
from .memory import TokenMemory
from .model import CachedToken, IssuedToken, Redeemed
from .ports import Clock, EventPublisher, GrantStore, TenantReader

OFFLINE_ACCESS_SETTING = "the app registration's offline_access permission and its consent"


class SignedIn:
    def __init__(
        self,
        grants: GrantStore,
        tenants: TenantReader,
        events: EventPublisher,
        memory: TokenMemory,
        clock: Clock,
        default_directory: str | None = None,
    ) -> None:
        self.default_directory = default_directory
        self.grants = grants
        self.tenants = tenants
        self.events = events
        self.memory = memory
        self.clock = clock

    async def store(
        self, principal: Principal, provider: Provider, flow: AcquisitionFlow, redeemed: Redeemed
    ) -> None:
        """Replace the principal's grant with the one just signed in for (its first access
        token needs no refresh); nothing is stored when someone else signed in, or someone
        outside the tenant (its mail domains, its Microsoft directory when one is configured).

        The right person is one whose id token names the principal's address among the
        addresses it proves (`domain.mailbox_addresses`): the sign-in name, or the primary
        SMTP address when the directory vouches for it — a user whose UPN is not their mail
        address signs in as themselves."""
        result = redeemed.result
        tenant = await self.tenants.get(principal.tenant_id)
        directory = tenant.identity.directory or self.default_directory
        if provider is Provider.MICROSOFT and (
            refusal := directory_refusal(result.id_token_claims, directory)
        ):
            raise IdentityMismatch(f"{refusal}: nothing was stored; sign in with an account of the tenant")
        pinned = provider is Provider.MICROSOFT and directory_pinned(directory)
        if not identity_matches(principal, result.id_token_claims, provider, pinned):
            raise IdentityMismatch(self._mismatch(principal, provider, result.id_token_claims))
        if not tenant.accepts_sign_in(principal.address):
            raise OutsideTenant(
                f"{principal.address} is not in the mail domains of tenant {tenant.tenant_id!r}"
            )
        if result.refresh_token is None:
            raise ConfigurationError(
                "the provider returned no refresh token (offline access was not granted)",
                setting=OFFLINE_ACCESS_SETTING,
            )
        now = self.clock()
        issued = IssuedToken(
            result.access_token,
            now,
            now + timedelta(seconds=result.expires_in),
            result.refresh_token,
            resource_of_scopes(provider, result.scopes),
        )
        death = predicted_death(provider, now, now, tenant.identity.google_testing_mode)
        await self.grants.replace(
            principal, provider, issued, result.scopes, flow, redeemed.authority, redeemed.client_id, death
        )
        self.memory.remember(principal, CachedToken.issued(issued, provider, principal.address))
        await self.events.publish(
            TokenAcquired(
                event_id=uuid.uuid4().hex,
                principal=principal,
                provider=provider,
                occurred_at=now,
                flow=flow,
                predicted_death_at=death,
            )
        )

    @staticmethod
    def _mismatch(principal: Principal, provider: Provider, claims: dict[str, object]) -> str:
        who = signed_in_address(claims) or "an unknown account"
        message = f"signed in as {who}, but the grant is for {principal.address}: sign in with that account"
        if provider is Provider.MICROSOFT:
            # The right person is refused only when their UPN is not their mail address and
            # the id token does not carry the mail address in a form fleetmail can trust.
            message += (
                f". If {who} is the sign-in name of {principal.address}'s owner, add the optional "
                "claims `email` and `xms_edov` to the app registration's id token (Entra admin "
                "center → App registrations → the app → Token configuration), or set the "
                "tenant's identity.directory to the directory id"
            )
        return message
