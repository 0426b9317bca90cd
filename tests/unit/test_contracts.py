import pytest
from fleetmail_contracts import catalogue
from fleetmail_contracts.tokens import AccessTokenOutcome, AccessTokenReply
from fleetmail_devkit import contracts_docs
from pydantic import ValidationError


def test_committed_documents_are_current() -> None:
    assert contracts_docs.stale() == [], "run 'make contracts' and commit the result"


def test_messages_are_frozen_and_strict() -> None:
    for model in catalogue.models():
        assert model.model_config.get("frozen") is True, model
        assert model.model_config.get("extra") == "forbid", model


def test_access_tokens_never_appear_in_repr() -> None:
    reply = AccessTokenReply(outcome=AccessTokenOutcome.GRANTED, access_token="secret-token-value")
    assert "secret-token-value" not in repr(reply)
    with pytest.raises(ValidationError):
        AccessTokenReply(outcome=AccessTokenOutcome.GRANTED, unknown_field=1)  # type: ignore[call-arg]


def test_subjects_follow_the_convention() -> None:
    for channel in catalogue.channels():
        kind = channel.subject.split(".")[1]
        assert channel.subject.startswith("fleetmail.") and kind in {"jobs", "events", "rpc", "dlq"}
        assert ".v1." in channel.subject


def test_administrator_roles() -> None:
    from job_gateway.admins import Administrator, Role, new_api_key, refusal, split_api_key

    key_id, secret, key = new_api_key()
    assert split_api_key(key) == (key_id, secret) and split_api_key("Bearer nonsense") is None
    owner = Administrator("o", Role.OWNER, None)
    fleet = Administrator("f", Role.FLEET_ADMIN, ("t1",))
    operator = Administrator("r", Role.OPERATOR, None)
    assert refusal(owner, "PUT", "t9", False) is None and refusal(owner, "POST", None, True) is None
    assert refusal(fleet, "PUT", "t1", False) is None
    assert "no access" in (refusal(fleet, "GET", "t2", False) or "")
    assert "only the owner" in (refusal(fleet, "POST", None, True) or "")
    assert refusal(operator, "GET", "t2", False) is None
    assert "read-only" in (refusal(operator, "DELETE", "t2", False) or "")


def test_device_rate_limit_allows_a_burst_then_the_rate() -> None:
    from job_gateway.ratelimit import RateLimiter

    now = [0.0]
    limiter = RateLimiter(rate_per_s=2, burst=3, clock=lambda: now[0])
    assert [limiter.take("d1") for _ in range(3)] == [None, None, None]
    wait = limiter.take("d1")
    assert wait is not None and 0.49 < wait <= 0.5
    assert limiter.take("d2") is None  # another device has its own bucket
    now[0] += 0.5
    assert limiter.take("d1") is None and limiter.take("d1") is not None


def test_tenant_lists_are_readable_by_every_role_and_writable_by_none_but_the_owner() -> None:
    from job_gateway.admins import Administrator, Role, refusal

    fleet = Administrator("f", Role.FLEET_ADMIN, ("t1",))
    assert refusal(fleet, "GET", None, False) is None
    assert refusal(fleet, "POST", None, False) is not None
