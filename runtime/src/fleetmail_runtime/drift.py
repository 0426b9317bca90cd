"""Whether a grant still fits its tenant's settings: token-service marks a grant that does
not as needing a new sign-in; job-gateway's console says so before a change is saved. One
rule, here, for both."""

from __future__ import annotations

from fleetmail_contracts.tokens import Principal, Provider

ADMINISTRATOR_CHANGED = "administrator_address_changed"
"""The error of an administrator grant whose tenant now names another administrator address."""

PROVIDER_CHANGED = "provider_changed"
"""The error of a grant whose tenant now sends through the other provider."""

PROVIDER_NAMES = {Provider.MICROSOFT: "Microsoft", Provider.GOOGLE: "Google"}


def settings_drift(
    principal: Principal,
    provider: Provider,
    administrator_address: str | None,
    tenant_provider: Provider,
) -> tuple[str, str] | None:
    """Why a grant no longer fits its tenant's settings, as (error, detail), or None.

    The administrator's grant is the mailbox of the address it was acquired for: once the
    tenant names another administrator address, sending with it would authenticate the old
    mailbox (and the SMTP server would refuse the new From with 535 at best). A grant of one
    provider is no good for the other. Neither is fixed by a refresh: only a new sign-in."""
    if principal.kind == "administrator":
        if administrator_address is None:
            return ADMINISTRATOR_CHANGED, (
                f"the administrator address {principal.address} was removed from the tenant's "
                "settings: set it and Acquire the administrator token again"
            )
        if administrator_address.casefold() != principal.address.casefold():
            return ADMINISTRATOR_CHANGED, (
                f"the administrator address changed from {principal.address} to "
                f"{administrator_address}: Acquire the administrator token again"
            )
    if provider is not tenant_provider:
        again = (
            "Acquire the administrator token again"
            if principal.kind == "administrator"
            else f"{principal.address} signs in again at the device"
        )
        return PROVIDER_CHANGED, (
            f"the OAuth 2.0 provider changed from {PROVIDER_NAMES[provider]} to "
            f"{PROVIDER_NAMES[tenant_provider]} since {principal.address} signed in: {again}"
        )
    return None
