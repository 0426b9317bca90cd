from datetime import UTC, datetime, timedelta

from fleetmail_contracts.tokens import Principal, PrincipalKind, Provider
from token_service.domain import (
    ErrorClass,
    ProviderError,
    associated_data,
    classify,
    grant_id,
    identity_matches,
    needs_refresh,
    predicted_death,
)

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


def test_predicted_death() -> None:
    assert predicted_death(Provider.MICROSOFT, NOW, NOW - timedelta(days=30)) == NOW + timedelta(days=90)
    acquired = NOW - timedelta(days=2)
    assert predicted_death(Provider.GOOGLE, NOW, acquired, google_testing_mode=True) == acquired + timedelta(
        days=7
    )
    assert predicted_death(Provider.GOOGLE, NOW, acquired) == NOW + timedelta(days=183)


def test_identity_must_match_the_grant_address() -> None:
    assert identity_matches(ADMIN, {"preferred_username": "admin@contoso.example"})
    assert identity_matches(ADMIN, {"email": "ADMIN@contoso.example"})
    assert not identity_matches(ADMIN, {"preferred_username": "someone.else@contoso.example"})
    assert not identity_matches(ADMIN, {})


def test_grant_identity() -> None:
    assert grant_id(ADMIN) == "t1:administrator"
    user = Principal(tenant_id="t1", kind=PrincipalKind.USER, address="U@x.example")
    assert grant_id(user) == "t1:user:u@x.example"
    assert associated_data(ADMIN, Provider.MICROSOFT) == b"t1|microsoft|admin@contoso.example|administrator"
