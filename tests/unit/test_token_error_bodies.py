"""Entra's error bodies, as the token endpoint sends them, and what token-service makes of
each: a dead grant, a sign-in the user must complete, a setting to fix, or a wait."""

import pytest
from fleetmail_contracts.tokens import Provider
from token_service.adapters.microsoft import raise_for_error
from token_service.domain import (
    REQUEST_LOOP_BACKOFF_S,
    ErrorClass,
    ProviderError,
    classify,
    configuration_remedy,
    scopes_not_granted,
)
from token_service.errors import ConfigurationError, ProviderUnavailable, ReauthorizationRequired


def entra(code: int, error: str = "invalid_grant", **extra: str) -> dict[str, object]:
    return {
        "error": error,
        "error_description": f"AADSTS{code}: … Trace ID: t Correlation ID: c Timestamp: 2026-11-29 10:00:00Z",
        "error_codes": [code],
        "timestamp": "2026-11-29 10:00:00Z",
        "trace_id": "t",
        "correlation_id": "c",
        **extra,
    }


def test_missing_consent_is_configuration_not_a_dead_grant() -> None:
    body = entra(65001, suberror="consent_required")
    assert classify(ProviderError.from_body(body, 400)) is ErrorClass.CONFIGURATION
    with pytest.raises(ConfigurationError) as raised:
        raise_for_error(body)
    assert "Grant admin consent" in str(raised.value)
    assert "sign in again" not in str(raised.value).replace("signing in again does not help", "")


def test_mfa_and_claims_challenges_ask_for_a_sign_in_but_are_not_revocations() -> None:
    for body in (
        entra(50076, suberror="basic_action"),
        entra(50079, suberror="basic_action"),
        entra(50076, error="interaction_required", claims='{"access_token":{"acrs":{"values":["c1"]}}}'),
    ):
        assert classify(ProviderError.from_body(body, 400)) is ErrorClass.TERMINAL
        with pytest.raises(ReauthorizationRequired) as raised:
            raise_for_error(body)
        assert raised.value.error == "interaction_required"
        assert "not revoked" in str(raised.value) and "multi-factor" in str(raised.value)
    with pytest.raises(ReauthorizationRequired) as revoked:
        raise_for_error(entra(50173))
    assert revoked.value.error == "invalid_grant"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (entra(7000222, error="invalid_client"), "client secret has expired"),
        (entra(53003, suberror="message_only"), "Conditional Access"),
        (entra(500011, error="invalid_resource"), "https://outlook.office.com/SMTP.Send"),
        (entra(70011, error="invalid_scope"), "FLEETMAIL_TOKEN_MICROSOFT_SCOPES"),
        (entra(700005), "identity.directory"),  # invalid_grant, yet no dead grant
        (entra(50059, error="invalid_request"), "not organizations or common"),
        (entra(1002012, error="invalid_scope"), "/.default"),
    ],
)
def test_configuration_faults_name_their_fix(body: dict[str, object], words: str) -> None:
    error = ProviderError.from_body(body, 400)
    assert classify(error) is ErrorClass.CONFIGURATION
    assert words in configuration_remedy(Provider.MICROSOFT, error)
    with pytest.raises(ConfigurationError) as raised:
        raise_for_error(body)
    assert words in str(raised.value)


def test_a_request_loop_waits_instead_of_killing_the_grant() -> None:
    body = entra(50196)
    assert classify(ProviderError.from_body(body, 400)) is ErrorClass.TRANSIENT
    with pytest.raises(ProviderUnavailable) as raised:
        raise_for_error(body)
    assert raised.value.retry_after_s == REQUEST_LOOP_BACKOFF_S


def test_an_unknown_refresh_token_is_a_dead_grant() -> None:
    assert classify(ProviderError.from_body(entra(9002313), 400)) is ErrorClass.TERMINAL


def test_scopes_left_unticked_at_consent() -> None:
    asked = ("https://mail.google.com/", "openid", "email")
    assert scopes_not_granted(asked, ("openid", "email")) == ["https://mail.google.com/"]
    assert scopes_not_granted(asked, ("https://mail.google.com/", "openid")) == []
    assert scopes_not_granted(asked, ()) == []
