from datetime import UTC, datetime, timedelta

from fleetmail_contracts.tokens import Principal, PrincipalKind, Provider
from token_service.domain import (
    ErrorClass,
    ProviderError,
    associated_data,
    classify,
    configuration_setting,
    expiring_soon,
    grant_id,
    identity_matches,
    keepalive_due,
    needs_refresh,
    predicted_death,
)
from token_service.errors import ConfigurationError, UnknownTenant

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ADMIN = Principal(tenant_id="t1", kind=PrincipalKind.ADMINISTRATOR, address="Admin@Contoso.example")


def test_terminal_errors_by_code_not_description() -> None:
    for codes in ((700082,), (50173,), (70043,), (70008,)):
        assert classify(ProviderError("invalid_grant", codes, 400)) is ErrorClass.TERMINAL
    assert classify(ProviderError("interaction_required", (), 400)) is ErrorClass.TERMINAL
    assert (
        classify(
            ProviderError.from_body(
                {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, 400
            )
        )
        is ErrorClass.TERMINAL
    )
    # The description never decides: words of death under a transient code stay transient.
    said_dead = {
        "error": "temporarily_unavailable",
        "error_description": "Token has been expired or revoked.",
    }
    assert classify(ProviderError.from_body(said_dead, 400)) is ErrorClass.TRANSIENT


def test_transient_errors() -> None:
    assert classify(ProviderError("temporarily_unavailable", (), 503)) is ErrorClass.TRANSIENT
    assert classify(ProviderError("whatever", (), 429)) is ErrorClass.TRANSIENT
    assert classify(ProviderError("server_error", (), None)) is ErrorClass.TRANSIENT


def test_configuration_errors() -> None:
    assert classify(ProviderError("unauthorized_client", (700016,), 400)) is ErrorClass.CONFIGURATION
    assert classify(ProviderError("invalid_scope", (70011,), 400)) is ErrorClass.CONFIGURATION


def test_refresh_ten_minutes_early() -> None:
    margin = timedelta(minutes=10)
    assert not needs_refresh(NOW + timedelta(minutes=11), NOW, margin)
    assert needs_refresh(NOW + timedelta(minutes=9), NOW, margin)
    assert needs_refresh(None, NOW, margin)


def test_a_short_lived_token_is_refreshed_after_half_its_life_not_on_every_use() -> None:
    margin, issued = timedelta(minutes=10), NOW
    expires = issued + timedelta(minutes=6)  # shorter than the margin
    assert not needs_refresh(expires, issued + timedelta(minutes=2), margin, issued)
    assert needs_refresh(expires, issued + timedelta(minutes=3, seconds=1), margin, issued)


def test_keep_alive_falls_due_when_the_grant_has_been_idle_long_enough() -> None:
    idle = timedelta(days=14)
    assert not keepalive_due(NOW - idle + timedelta(seconds=1), NOW, idle)
    assert keepalive_due(NOW - idle, NOW, idle)


def test_a_death_is_near_inside_the_horizon_and_never_when_unknown() -> None:
    horizon = timedelta(days=14)
    assert expiring_soon(NOW + horizon, NOW, horizon)
    assert not expiring_soon(NOW + horizon + timedelta(seconds=1), NOW, horizon)
    assert not expiring_soon(None, NOW, horizon)


def test_a_configuration_error_names_the_setting_to_fix() -> None:
    assert "microsoft_client_secret" in configuration_setting(Provider.MICROSOFT, "invalid_client")
    assert "identity.client_id" in configuration_setting(Provider.MICROSOFT, "unauthorized_client")
    assert "FLEETMAIL_TOKEN_GOOGLE_SCOPES" in configuration_setting(Provider.GOOGLE, "invalid_scope")
    assert "identity" in configuration_setting(Provider.GOOGLE, "something_new")
    error = ConfigurationError("the provider refused the request", setting="identity.directory")
    assert error.setting == "identity.directory" and "identity.directory" in str(error)
    assert "fleetmail tenants set t9" in str(UnknownTenant("t9"))


def test_predicted_death() -> None:
    assert predicted_death(Provider.MICROSOFT, NOW, NOW - timedelta(days=30)) == NOW + timedelta(days=90)
    acquired = NOW - timedelta(days=2)
    assert predicted_death(Provider.GOOGLE, NOW, acquired, google_testing_mode=True) == acquired + timedelta(
        days=7
    )
    assert predicted_death(Provider.GOOGLE, NOW, acquired) == NOW + timedelta(days=183)


def test_identity_must_match_the_grant_address() -> None:
    ms, google = Provider.MICROSOFT, Provider.GOOGLE
    assert identity_matches(ADMIN, {"preferred_username": "admin@contoso.example"}, ms)
    assert identity_matches(ADMIN, {"email": "ADMIN@contoso.example", "email_verified": True}, google)
    assert not identity_matches(ADMIN, {"preferred_username": "someone.else@contoso.example"}, ms)
    assert not identity_matches(ADMIN, {}, ms)


def test_a_upn_other_than_the_mail_address_matches_through_a_vouched_email_claim() -> None:
    claims = {"preferred_username": "a.dmin@contoso.onmicrosoft.com", "email": "admin@contoso.example"}
    ms = Provider.MICROSOFT
    # Entra's email claim counts only where nobody else can set it (nOAuth): the domain's
    # directory vouches for it, or the tenant's directory is pinned by id.
    assert not identity_matches(ADMIN, claims, ms)
    assert identity_matches(ADMIN, {**claims, "xms_edov": True}, ms)
    assert identity_matches(ADMIN, claims, ms, directory_pinned=True)
    assert not identity_matches(ADMIN, {**claims, "xms_edov": False}, ms)
    # A different person stays refused, vouched or not.
    other = {"preferred_username": "eve@contoso.example", "email": "eve@contoso.example", "xms_edov": True}
    assert not identity_matches(ADMIN, other, ms, directory_pinned=True)
    assert not identity_matches(
        ADMIN, {"email": "admin@contoso.example", "email_verified": False}, Provider.GOOGLE
    )


def test_grant_identity() -> None:
    assert grant_id(ADMIN) == "t1:administrator"
    user = Principal(tenant_id="t1", kind=PrincipalKind.USER, address="U@x.example")
    assert grant_id(user) == "t1:user:u@x.example"
    assert associated_data(ADMIN, Provider.MICROSOFT) == b"t1|microsoft|admin@contoso.example|administrator"
