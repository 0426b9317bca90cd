"""token-service's pure edges: every request answered (an `RpcFailure` when a handler could
not carry it out), a credentials change that contradicts itself refused, and a provider
answer that is not an OAuth reply recognised as such."""

from __future__ import annotations

import json

import pytest
from faststream.nats import NatsResponse
from fleetmail_contracts.credentials import SetCredentials
from fleetmail_contracts.rpc import RPC_FAILURE_HEADER, RpcFailure
from google.auth.exceptions import RefreshError
from token_service.adapters.credentials import check_not_contradictory
from token_service.adapters.google import unreadable
from token_service.adapters.microsoft import raise_for_error, read_reply, token_result
from token_service.errors import (
    ConfigurationError,
    ReauthorizationRequired,
    StoreUnavailable,
    UnreadableReply,
)
from token_service.handlers import answered, failure_of


def failure(response: object) -> RpcFailure:
    assert isinstance(response, NatsResponse)
    body = RpcFailure.model_validate_json(response.body)  # type: ignore[arg-type]
    assert response.headers == {RPC_FAILURE_HEADER: body.kind}
    return body


async def test_a_handler_that_fails_still_answers_with_why() -> None:
    @answered
    async def broken(tenant_id: str) -> str:
        raise KeyError(f"secret-looking {tenant_id}")

    @answered
    async def store_down(tenant_id: str) -> str:
        raise StoreUnavailable("cannot store a tenant's credentials: AutoReconnect", 5.0)

    @answered
    async def fine(tenant_id: str) -> str:
        return f"ok {tenant_id}"

    unexpected = failure(await broken("t1"))
    # Of an unforeseen failure only its class is told: its text may hold anything.
    assert unexpected.kind == "permanent" and "failed unexpectedly (KeyError)" in unexpected.reason
    assert "secret-looking" not in unexpected.reason
    transient = failure(await store_down("t1"))
    assert transient == RpcFailure(
        reason="cannot store a tenant's credentials: AutoReconnect", kind="transient"
    )
    assert await fine("t1") == "ok t1"


def test_a_permanent_token_service_error_is_told_as_it_is() -> None:
    said = failure_of(ReauthorizationRequired("the provider refused the grant; sign in again"))
    assert said == RpcFailure(reason="the provider refused the grant; sign in again", kind="permanent")


def test_a_credentials_change_that_gives_and_clears_one_field_names_it() -> None:
    check_not_contradictory(SetCredentials(tenant_id="t1", smtp_username="scanner", clear=("smtp_password",)))
    with pytest.raises(
        ConfigurationError, match="google_service_account is both given and listed in clear"
    ) as refused:
        check_not_contradictory(
            SetCredentials(
                tenant_id="t1",
                google_service_account={"type": "service_account"},
                clear=("google_service_account",),
            )
        )
    assert refused.value.setting == "google_service_account"


@pytest.mark.parametrize(
    "answer",
    [
        lambda: json.loads("<html><body>502 Bad Gateway</body></html>"),
        lambda: json.loads('{"access_token": "eyJ0'),
        lambda: ["access_token"],
        lambda: "<html>",
        lambda: ["device_code"].__getitem__("interval"),  # how MSAL trips over a list
    ],
)
def test_msal_failing_on_an_answer_that_is_no_json_object_is_an_unreadable_reply(answer) -> None:
    with pytest.raises(UnreadableReply, match="answer to the token refresh could not be read") as unread:
        read_reply("token refresh", answer, lambda: 7.0)
    assert unread.value.retry_after_s == 7.0 and "proxy" in str(unread.value)


def test_a_json_object_with_neither_an_error_nor_a_token_is_unreadable_too() -> None:
    assert read_reply("token refresh", lambda: {"error": "invalid_grant"}, lambda: 1.0) == {
        "error": "invalid_grant"
    }
    with pytest.raises(UnreadableReply):
        raise_for_error({"token_type": "Bearer"}, "code redemption")
    raise_for_error({"access_token": "x"})
    with pytest.raises(ReauthorizationRequired):
        raise_for_error({"error": "invalid_grant"})
    with pytest.raises(UnreadableReply, match="token refresh"):
        token_result({"access_token": "x", "expires_in": "soon"}, "token refresh")
    assert token_result({"access_token": "x", "expires_in": "60"}, "token refresh").expires_in == 60.0


def test_google_auth_refusing_a_body_that_was_no_json_object_is_not_googles_refusal() -> None:
    assert unreadable(RefreshError("<html>403 Forbidden</html>", retryable=False))
    assert unreadable(RefreshError("No access token in response.", {"token_type": "Bearer"}))
    assert not unreadable(RefreshError("invalid_grant: Bad Request", {"error": "invalid_grant"}))
