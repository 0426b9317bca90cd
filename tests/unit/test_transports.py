"""Transports per tenant (`fleetmail_contracts.transports`): which provider each belongs to,
what each needs of the administrator's grant, and how job-gateway states it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fleetmail_contracts.tenants import IdentitySettings, TenantSettings
from fleetmail_contracts.tokens import (
    AcquisitionFlow,
    GrantStatus,
    GrantView,
    Principal,
    PrincipalKind,
    Provider,
)
from fleetmail_contracts.transports import Transport, missing_scopes, needed_scopes
from job_gateway.domain import token_status
from pydantic import ValidationError

GRAPH_SEND = "https://graph.microsoft.com/Mail.Send"
GRAPH_READWRITE = "https://graph.microsoft.com/Mail.ReadWrite"
SMTP_SEND = "https://outlook.office.com/SMTP.Send"
GMAIL_SEND = "https://www.googleapis.com/auth/gmail.send"


def tenant(provider: Provider = Provider.MICROSOFT, transport: Transport = Transport.SMTP, **extra: object):
    return TenantSettings(
        tenant_id="acme",
        oauth_enabled=True,
        administrator_address="admin@acme.example",
        provider=provider,
        transport=transport,
        **extra,
    )


def grant(
    provider: Provider,
    scopes: tuple[str, ...],
    status: GrantStatus = GrantStatus.ACTIVE,
    flow: AcquisitionFlow = AcquisitionFlow.DEVICE_CODE,
) -> GrantView:
    return GrantView(
        principal=Principal(tenant_id="acme", kind=PrincipalKind.ADMINISTRATOR, address="admin@acme.example"),
        provider=provider,
        status=status,
        flow=flow,
        scopes=scopes,
        acquired_at=datetime(2026, 11, 1, tzinfo=UTC),
    )


def test_smtp_is_the_default_and_fits_either_provider() -> None:
    assert TenantSettings(tenant_id="acme").transport is Transport.SMTP
    assert tenant(Provider.GOOGLE).transport is Transport.SMTP


@pytest.mark.parametrize(
    ("provider", "transport"), [(Provider.GOOGLE, Transport.GRAPH), (Provider.MICROSOFT, Transport.GMAIL_API)]
)
def test_an_api_transport_belongs_to_its_provider(provider: Provider, transport: Transport) -> None:
    with pytest.raises(ValidationError, match=f"transport {transport.value} is .* needs provider"):
        tenant(provider, transport)


def test_a_broader_google_scope_covers_gmail_send_but_graph_permissions_are_each_their_own() -> None:
    assert missing_scopes((GMAIL_SEND,), ("https://mail.google.com/", "openid")) == ()
    assert missing_scopes((GMAIL_SEND,), ("https://www.googleapis.com/auth/gmail.readonly",)) == (GMAIL_SEND,)
    graph = needed_scopes(Provider.MICROSOFT, Transport.GRAPH)
    # Entra names Graph's permissions bare in its answers.
    assert missing_scopes(graph, ("Mail.Send", "mail.readwrite", "openid")) == ()
    assert missing_scopes(graph, ("Mail.Send",)) == (GRAPH_READWRITE,)
    assert missing_scopes(graph, (SMTP_SEND,)) == (GRAPH_SEND, GRAPH_READWRITE)


def test_status_says_a_grant_taken_for_smtp_lacks_what_graph_needs() -> None:
    readiness = token_status(
        tenant(transport=Transport.GRAPH), [grant(Provider.MICROSOFT, (SMTP_SEND,))]
    ).transport
    assert readiness.ready is False and readiness.needed == (GRAPH_SEND, GRAPH_READWRITE)
    assert readiness.missing == (GRAPH_SEND, GRAPH_READWRITE) and "[Acquire]" in readiness.detail

    ready = token_status(
        tenant(transport=Transport.GRAPH), [grant(Provider.MICROSOFT, ("Mail.Send", "Mail.ReadWrite"))]
    ).transport
    assert ready.ready is True and ready.missing == ()
    smtp = token_status(tenant(), [grant(Provider.MICROSOFT, (SMTP_SEND,))]).transport
    assert smtp.ready is True and smtp.needed == (SMTP_SEND,)


def test_status_of_gmail_api_without_a_token_a_dead_grant_or_oauth() -> None:
    google = tenant(Provider.GOOGLE, Transport.GMAIL_API)
    none = token_status(google, []).transport
    assert none.ready is False and none.missing == (GMAIL_SEND,) and "no administrator token" in none.detail
    dead = token_status(google, [grant(Provider.GOOGLE, (GMAIL_SEND,), GrantStatus.REAUTHORIZATION_REQUIRED)])
    assert dead.transport.ready is False and "new sign-in" in dead.transport.detail
    off = token_status(google.model_copy(update={"oauth_enabled": False}), []).transport
    assert off.ready is False and "OAuth 2.0 on" in off.detail
    smtp_off = token_status(tenant().model_copy(update={"oauth_enabled": False}), []).transport
    assert smtp_off.ready is True and smtp_off.needed == ()


def test_app_only_names_the_permissions_an_administrator_grants_and_leaves_the_check_to_the_provider() -> (
    None
):
    app_only = tenant(transport=Transport.GRAPH, identity=IdentitySettings(app_only=True))
    readiness = token_status(
        app_only,
        [grant(Provider.MICROSOFT, ("https://graph.microsoft.com/.default",), flow=AcquisitionFlow.APP_ONLY)],
    ).transport
    assert readiness.ready is None and readiness.needed == ("Mail.Send", "Mail.ReadWrite")
    assert "admin consent" in readiness.detail and "application access policy" in readiness.detail
