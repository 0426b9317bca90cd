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
