"""How a mail API's answers become mail-service's errors, as pure functions over
`httpx.Response` values: a Retry-After sets a delay only when present and readable, within
[1 s, the deployment's maximum]; without one, the retry policy's backoff spaces retries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from mail_service.adapters.gmail_api import error_of as gmail_error_of
from mail_service.adapters.graph import GraphDelivery
from mail_service.adapters.graph import error_of as graph_error_of
from mail_service.adapters.mail_api import RETRY_AFTER_MAX_S, retry_after_of
from mail_service.domain.decisions import Retry, RetryPolicy, decide, retry_delay
from mail_service.errors import ApiTransient, MustWait

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_deliver=8, base_s=5, max_s=300)
GRAPH_ERROR = {"error": {"code": "ServiceUnavailable", "message": "down"}}


def answer(status: int, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(status, headers=headers, json=GRAPH_ERROR)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30", 30.0),
        ("0", 1.0),
        ("-5", 1.0),
        ("0.2", 1.0),
        ("inf", RETRY_AFTER_MAX_S),
        ("1e12", RETRY_AFTER_MAX_S),
        ("31536000", RETRY_AFTER_MAX_S),
        ("Mon, 30 Nov 2026 09:02:00 GMT", 120.0),
        ("Mon, 30 Nov 2026 08:00:00 GMT", 1.0),
        ("Wed, 30 Nov 2027 09:00:00 GMT", RETRY_AFTER_MAX_S),
    ],
)
def test_a_retry_after_in_seconds_or_as_a_date_is_kept_within_bounds(value: str, seconds: float) -> None:
    assert retry_after_of(answer(503, value), NOW) == seconds


@pytest.mark.parametrize("value", [None, "", "soon", "nan", "-inf-", "Mon, 99 Foo 2026"])
def test_no_retry_after_or_an_unreadable_one_asks_for_no_delay(value: str | None) -> None:
    assert retry_after_of(answer(503, value), NOW) is None


def test_the_maximum_is_the_deployments() -> None:
    assert retry_after_of(answer(503, "7200"), NOW, max_s=600) == 600


@pytest.mark.parametrize("error_of", [graph_error_of, gmail_error_of])
def test_a_5xx_without_retry_after_is_retried_with_exponential_backoff(error_of) -> None:  # type: ignore[no-untyped-def]
    error = error_of(answer(503), NOW)
    assert isinstance(error, ApiTransient) and error.retry_after_s is None
    decision = decide(error, attempt=3, policy=POLICY, jitter=lambda: 0.0)
    assert decision == Retry(retry_delay(3, 5, 300, 0.0), str(error)) and decision.delay_s == 10


@pytest.mark.parametrize("error_of", [graph_error_of, gmail_error_of])
def test_a_5xx_with_retry_after_waits_what_it_says(error_of) -> None:  # type: ignore[no-untyped-def]
    decision = decide(error_of(answer(503, "120"), NOW), attempt=3, policy=POLICY, jitter=lambda: 0.0)
    assert isinstance(decision, Retry) and decision.delay_s == 120


@pytest.mark.parametrize("value", ["inf", "1e12"])
def test_an_enormous_retry_after_neither_raises_nor_parks_a_job_for_ever(value: str) -> None:
    error = graph_error_of(answer(429, value), NOW)
    assert isinstance(error, MustWait) and error.until == NOW + timedelta(seconds=RETRY_AFTER_MAX_S)


def test_a_429_without_retry_after_is_an_attempt_spaced_by_backoff() -> None:
    error = graph_error_of(answer(429), NOW)
    assert isinstance(error, ApiTransient) and error.retry_after_s is None


def test_gmails_403_rate_limit_is_bounded_alike() -> None:
    body = {"error": {"message": "Rate", "errors": [{"reason": "userRateLimitExceeded"}]}}
    error = gmail_error_of(httpx.Response(403, headers={"Retry-After": "0"}, json=body), NOW)
    assert isinstance(error, MustWait) and error.until == NOW + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://outlook.office.com/api/v2.0/Users('a')/AttachmentSessions('s')?authtoken=x", True),
        ("https://OUTLOOK.office.com:443/api/v2.0/upload", True),
        ("http://outlook.office.com/api/v2.0/upload", False),
        ("https://outlook.office.com:8443/api/v2.0/upload", False),
        ("https://outlook.office.com:99999/api/v2.0/upload", False),
        ("https://internal.example/api/v2.0/upload", False),
        ("ftp://outlook.office.com/upload", False),
    ],
)
async def test_graph_uploads_go_only_to_an_allowed_host_over_https_on_its_default_port(
    url: str, allowed: bool
) -> None:
    graph = GraphDelivery("https://graph.microsoft.com", None, 5, lambda: NOW, ("outlook.office.com",))
    try:
        assert graph._may_upload_to(url) is allowed
    finally:
        await graph.close()


async def test_graphs_own_origin_may_take_uploads_at_its_configured_port_only() -> None:
    graph = GraphDelivery("https://127.0.0.1:8443", None, 5, lambda: NOW)
    try:
        assert graph._may_upload_to("https://127.0.0.1:8443/api/v2.0/upload")
        assert not graph._may_upload_to("https://127.0.0.1:9000/api/v2.0/upload")
        assert not graph._may_upload_to("http://127.0.0.1:8443/api/v2.0/upload")
    finally:
        await graph.close()
