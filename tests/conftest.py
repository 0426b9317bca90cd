"""Fixtures shared by every tier. Real servers start once per test run on free loopback ports."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fleetmail_devkit.otlp import OtlpSink
from fleetmail_devkit.stack import Ports, Stack

LOG_LINES = 25  # of each service and emulator, shown when a test that used the stack fails

# Parallel workers (pytest-xdist) each start their own servers: each draws ports from its own
# slice of the range, so two workers never pick the same one (devkit/ports.py).
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["FLEETMAIL_DEV_PORT_SLICE"] = (
        f"{int(os.environ['PYTEST_XDIST_WORKER'].removeprefix('gw'))}/{os.environ['PYTEST_XDIST_WORKER_COUNT']}"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test that used the stack shows what the services said last (their logs are
    JSON lines, already redacted): a failure on CI then says more than its assertion."""
    outcome = yield
    report = outcome.get_result()
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.when != "call" or not report.failed or not isinstance(stack, Stack):
        return
    for part in stack.parts:
        if part.name.split("-")[0] in ("nats", "mongodb"):
            continue
        lines = [line for line in part.output if '"level": "debug"' not in line][-LOG_LINES:]
        if lines:
            report.sections.append((f"last lines of {part.name}", "\n".join(lines)))


TIERS = ("unit", "component", "integration", "security", "e2e", "browser")


# Run order, longest first, so that with parallel workers the short tests fill in at the end:
# modules with a stack of their own, then the other tiers from the slowest.
RUN_ORDER = {
    "own_stack": 0,
    "e2e": 1,
    "browser": 2,
    "integration": 2,
    "security": 2,
    "component": 3,
    "unit": 4,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test's tier is its folder's name."""
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))

    def order(item: pytest.Item) -> int:
        if item.get_closest_marker("own_stack") is not None:
            return RUN_ORDER["own_stack"]
        return RUN_ORDER.get(Path(str(item.fspath)).parent.name, len(RUN_ORDER))

    items.sort(key=order)  # stable: within a group, the usual order


ALERT_RELAY = ("alerts@fleetmail.example", "relay-password")


@pytest.fixture(scope="session")
def otlp_sink() -> Iterator[OtlpSink]:
    """The collector the session's services export traces and metrics to."""
    sink = OtlpSink().start()
    yield sink
    sink.stop()


def session_env(ports: Ports, data_dir: Path, otlp_url: str) -> dict[str, str]:
    """The settings the session's stack runs with: telemetry on as in production, and timers on
    a test's time scale."""
    return {
        "FLEETMAIL_OTEL_EXPORTER": "otlp",
        "FLEETMAIL_OTEL_ENDPOINT": otlp_url,
        # Metrics are pushed every 5 s (production: 15), so a test's minute of work is in a
        # few exports; the scrape endpoints, which the metric tests read, are always current.
        "FLEETMAIL_OTEL_METRICS_INTERVAL_S": "5",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "FLEETMAIL_METRICS_POLL_S": "2",
        # Short lease and ack wait, so tests that kill a replica do not wait out production's.
        "FLEETMAIL_TOKEN_LEASE_TTL_S": "3",
        "FLEETMAIL_TOKEN_DEVICE_POLL_GRACE_S": "1",
        "FLEETMAIL_TOKEN_DEVICE_POLL_CHECK_S": "2",
        "FLEETMAIL_MAIL_ACK_WAIT_S": "6",
        "FLEETMAIL_MAIL_SUBMISSION_LEASE_S": "6",
        "FLEETMAIL_MAIL_PARK_TIMEOUT_S": "15",
        # Background rounds (this sweep, the attachment sweep, the device-code check, the
        # notifier's condition check) every 2 s, not every 0.5 or 1 s: each is a database or
        # bus round trip even with nothing to do, a fifth of an idle stack's CPU. Every test
        # waiting on a round allows it many times 2 s.
        "FLEETMAIL_MAIL_PARK_SWEEP_S": "2",
        # Exchange's 30 messages a minute per mailbox would make every test that sends a few
        # dozen jobs wait minutes; the emulator is told the same below. Concurrency stays
        # the real 3. test_provider_limits shrinks the rate for mailboxes of its own.
        "FLEETMAIL_MAIL_MICROSOFT_MESSAGES_PER_MINUTE": "60000",
        # The providers' 24-hour quota window is 20 s here (counted in buckets under a
        # second): the quota tests see a day pass without waiting one, and have time to look at
        # the jobs waiting on a loaded machine. No test sends anywhere near the default quotas
        # (10,000 recipients, 2,000 messages) within 20 s.
        "FLEETMAIL_MAIL_QUOTA_WINDOW_S": "20",
        # Documents on a test's time scale (test_attachment_lifecycle): a dead letter keeps
        # its documents 12 s, an object no job holds goes once 5 s old. No test's upload
        # waits that long for its job to be queued.
        "FLEETMAIL_DEAD_LETTER_RETENTION_DAYS": str(12 / 86400),
        "FLEETMAIL_MAIL_ATTACHMENT_ORPHAN_GRACE_S": "5",
        "FLEETMAIL_MAIL_ATTACHMENT_SWEEP_S": "2",
        # Small enough for a test to cross it with a few MB (test_mail_limits_and_tls).
        "FLEETMAIL_MAIL_MAX_MESSAGE_BYTES_GOOGLE": "5000000",
        # Low enough for test_gateway_admin to cross it; no other test sends 40 jobs at once.
        # The rate after the burst is far below what the gateway serves on a loaded
        # machine (at 20/s, a busy CI accepted all 150 of a flood), and above any other
        # test's pace.
        # The overview's figures asked on every page: the tests look right after a change.
        # (Kept for a while is production's; tests/unit/test_gateway_overview.py tests it.)
        "FLEETMAIL_GATEWAY_OVERVIEW_MAX_AGE_S": "0",
        "FLEETMAIL_GATEWAY_DEVICE_RATE_BURST": "40",
        "FLEETMAIL_GATEWAY_DEVICE_RATE_PER_S": "2",
        # Webhook retries and the circuit breaker on a test's time scale.
        "FLEETMAIL_NOTIFIER_WEBHOOK_BREAKER_FAILURES": "3",
        "FLEETMAIL_NOTIFIER_WEBHOOK_BREAKER_COOLDOWN_S": "2",
        "FLEETMAIL_NOTIFIER_PROVIDER_UNREACHABLE_AFTER_S": "2",
        "FLEETMAIL_NOTIFIER_CONDITION_CHECK_S": "2",
        "FLEETMAIL_NOTIFIER_GRANT_SCAN_S": "15",
        # Alert e-mail through an operator's relay (the SMTP emulator, basic auth).
        "FLEETMAIL_NOTIFIER_SMTP_HOST": "127.0.0.1",
        "FLEETMAIL_NOTIFIER_SMTP_PORT": str(ports.smtp_starttls),
        "FLEETMAIL_NOTIFIER_SMTP_USERNAME": ALERT_RELAY[0],
        "FLEETMAIL_NOTIFIER_SMTP_PASSWORD": ALERT_RELAY[1],
        "FLEETMAIL_NOTIFIER_SMTP_FROM": ALERT_RELAY[0],
        "FLEETMAIL_NOTIFIER_SMTP_CA_BUNDLE": str(data_dir / "tls" / "ca.pem"),
    }


@pytest.fixture(scope="session")
async def stack(otlp_sink: OtlpSink) -> AsyncIterator[Stack]:
    """The whole stack as `make run` starts it: nats-server, SecantusDB, emulators, services,
    with telemetry on as in production (traces to the session's OTLP receiver, metrics on
    each service's scrape endpoint)."""
    data_dir = Path(tempfile.mkdtemp(prefix="fleetmail-test-"))
    ports = Ports.free()
    running = Stack(data_dir, ports, echo=False, extra_env=session_env(ports, data_dir, otlp_sink.url))
    await running.start()
    async with httpx.AsyncClient(timeout=10) as control:
        await control.post(
            f"{running.smtp_control_url}/_emulator/mailboxes",
            json={"address": ALERT_RELAY[0], "password": ALERT_RELAY[1]},
        )
        await control.post(
            f"{running.smtp_control_url}/_emulator/settings", json={"default_limits": {"per_minute": 60000}}
        )
    async with httpx.AsyncClient(verify=running.ssl_context(), timeout=10, trust_env=False) as control:
        # Microsoft polls a device code every 5 s; tests that sign in do not wait that long
        # (the emulator's default stays Microsoft's, and make run keeps it).
        answer = await control.post(
            f"{running.microsoft_url}/_emulator/settings", json={"device_code_interval_s": 1}
        )
        assert answer.status_code == 200, answer.text
    try:
        yield running
    finally:
        await running.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
async def emulator_http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=stack.ssl_context(), timeout=10.0, trust_env=False) as client:
        yield client


@pytest.fixture
async def admin(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """job-gateway's API as the fleet administrator."""
    headers = {"Authorization": f"Bearer {stack.admin_api_key()}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=30) as http:
        yield http


@pytest.fixture
async def service_account(stack, emulator_http):
    """Creates a Google service account with domain-wide delegation at the emulator; returns
    its JSON key, as Google Cloud exports it."""

    async def create(domain: str, scopes: list[str] | None = None) -> dict:
        body = {
            "client_email": f"sender-{uuid.uuid4().hex[:6]}@fleet.iam.gserviceaccount.com",
            "domain": domain,
        }
        if scopes is not None:
            body["delegated_scopes"] = scopes
        response = await emulator_http.post(f"{stack.google_url}/_emulator/service-accounts", json=body)
        assert response.status_code == 200
        return response.json()

    return create
