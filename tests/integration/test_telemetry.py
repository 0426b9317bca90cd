"""Telemetry: one job is one trace across the four services; metrics move with jobs and keep
their label sets bounded; nothing secret leaves a process through telemetry."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import pytest
from fleetmail_contracts.tokens import AccessTokenOutcome, Principal, PrincipalKind
from fleetmail_devkit.otlp import OtlpSink, SpanRecord
from fleetmail_devkit.probes import (
    Sample,
    device_panel,
    request_tokens,
    scrape,
    tenant_with_administrator_grant,
    total,
)

from tests.utils import eventually

SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # OTLP span kinds
SERVICES = ("job-gateway", "token-service", "mail-service", "notifier")


@pytest.fixture
async def panel(stack, emulator_http):
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    async with device_panel(stack, principal.tenant_id) as client:
        client.tenant_id = principal.tenant_id  # type: ignore[attr-defined]
        yield client


async def send_and_wait(panel: httpx.AsyncClient, job: dict) -> dict:
    response = await panel.post("/v1/jobs", data={"job": json.dumps(job)})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    for _ in range(300):
        status = (await panel.get(f"/v1/jobs/{job_id}")).json()
        if status["status"] in ("sent", "failed"):
            return status
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {status}")


def ancestors(span: SpanRecord, by_id: dict[str, SpanRecord]) -> list[SpanRecord]:
    chain = []
    while span.parent_id is not None:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain


async def _linked_to(sink: OtlpSink, service: str, link: tuple[str, str]) -> SpanRecord:
    for _ in range(75):
        found = sink.find(lambda s: s.service == service and link in s.links)
        if found:
            return found[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no span from {service} links to {link}")


async def wait_for_spans(
    sink: OtlpSink, trace_id: str, wanted: set[str], seconds: float = 15
) -> list[SpanRecord]:
    for _ in range(int(seconds / 0.2)):
        spans = sink.trace(trace_id)
        if wanted <= {s.name for s in spans}:
            return spans
        await asyncio.sleep(0.2)
    return sink.trace(trace_id)


async def test_one_job_is_one_trace_from_the_device_to_the_smtp_reply(
    stack, emulator_http, otlp_sink: OtlpSink, panel
) -> None:
    # The SMTP server refuses the first token: the trace must show the forced refresh too.
    await emulator_http.post(
        f"{stack.smtp_control_url}/_emulator/faults",
        json={"stage": "auth", "code": 535, "text": "5.7.3 Authentication unsuccessful", "count": 1},
    )
    status = await send_and_wait(panel, {"function": "scan_to_email", "to": ["x@fabrikam.example"]})
    assert status["status"] == "sent", status
    job_id = status["job_id"]

    [request] = await _root_for(otlp_sink, job_id)
    wanted = {
        "fleetmail.jobs.v1.scan_to_email publish",
        "fleetmail.jobs.v1.scan_to_email process",
        "fleetmail.rpc.v1.tokens.access process",
        "oauth2 token refresh",
        "smtp send",
        "notifier observe sent",
    }
    spans = await wait_for_spans(otlp_sink, request.trace_id, wanted)
    names = {s.name for s in spans}
    assert wanted <= names, sorted(names)
    assert {s.service for s in spans} == {"job-gateway", "mail-service", "token-service", "notifier"}

    by_id = {s.span_id: s for s in spans}
    # One root, the device's HTTP request; every other span hangs from it.
    assert [s for s in spans if s.parent_id is None] == [request]
    for span in spans:
        if span is not request:
            assert request in ancestors(span, by_id), f"{span.service}: {span.name} is not in the job's chain"

    def one(service: str, name: str) -> SpanRecord:
        found = [s for s in spans if s.service == service and s.name == name]
        assert found, f"no {name!r} span from {service}"
        return found[0]

    def under(child: SpanRecord, parent: SpanRecord) -> None:
        assert parent in ancestors(child, by_id), f"{child.name} is not under {parent.name}"

    # One span per message published (OpenTelemetry's messaging conventions ask for a separate
    # "create" span only for batches): every "process" of the message hangs under it.
    assert not [s.name for s in spans if s.name.endswith(" create")], "a create span per publish again"
    job_published = one("job-gateway", "fleetmail.jobs.v1.scan_to_email publish")
    processed = one("mail-service", "fleetmail.jobs.v1.scan_to_email process")
    under(job_published, request)
    assert processed.parent_id == job_published.span_id
    assert processed.attributes["fleetmail.job_id"] == job_id

    asked = [
        s for s in spans if s.service == "mail-service" and s.name == "fleetmail.rpc.v1.tokens.access publish"
    ]
    answered = [
        s
        for s in spans
        if s.service == "token-service" and s.name == "fleetmail.rpc.v1.tokens.access process"
    ]
    assert len(asked) == 2 and len(answered) == 2, "the token, then the forced refresh after the 535"
    for ask in asked:
        under(ask, processed)
    assert {a.parent_id for a in answered} == {a.span_id for a in asked}
    refresh = one("token-service", "oauth2 token refresh")
    assert refresh.parent_id in {a.span_id for a in answered}
    assert refresh.kind == CLIENT and refresh.attributes["provider"] == "microsoft"

    sends = [s for s in spans if s.service == "mail-service" and s.name == "smtp send"]
    assert len(sends) == 2 and {s.parent_id for s in sends} == {processed.span_id}
    assert sorted(str(s.attributes.get("smtp.reply", ""))[:3] for s in sends)[-1] == "250"

    sent_published = one("mail-service", "fleetmail.events.v1.mail.sent publish")
    under(sent_published, processed)
    assert one("notifier", "notifier observe sent").parent_id == sent_published.span_id
    # A batch consumer's span (job-gateway's status projection reads mail events in batches)
    # is a trace of its own, linked to each message's publish span: no "create" span as its root.
    sent_link = (sent_published.trace_id, sent_published.span_id)
    projected = await _linked_to(otlp_sink, "job-gateway", sent_link)
    assert projected.parent_id is None and projected.kind == CONSUMER, projected
    assert projected.name.startswith("fleetmail.events.v1.mail."), projected.name
    assert projected.name.endswith(" process"), projected.name
    assert not [s.name for s in otlp_sink.trace(projected.trace_id) if s.name.endswith(" create")]
    # MongoDB commands are spans of the same trace (the gateway's job record, for one).
    assert any(s.service == "job-gateway" and s.attributes.get("db.system") == "mongodb" for s in spans)
    # Reply inboxes (`_INBOX.…`, a service's `_INBOX_<service>.…`) never name a span.
    assert not [s.name for s in otlp_sink.spans if re.search(r"_INBOX[._]", s.name)]


async def _root_for(sink: OtlpSink, job_id: str) -> list[SpanRecord]:
    """The gateway's HTTP span of the request that created the job: it carries the job's id,
    as an operator would search for it."""
    for _ in range(75):
        roots = sink.find(lambda s: s.attributes.get("fleetmail.job_id") == job_id and s.parent_id is None)
        if roots:
            return roots
        await asyncio.sleep(0.2)
    raise AssertionError(f"no spans for job {job_id}: {[s.name for s in sink.spans[-20:]]}")


async def test_metrics_move_as_jobs_succeed_and_fail(stack, emulator_http, panel, otlp_sink) -> None:
    tenant = panel.tenant_id
    admin = f"admin@{tenant}.example"
    mailboxes = f"{stack.smtp_control_url}/_emulator/mailboxes"
    await emulator_http.post(mailboxes, json={"address": admin, "smtp_auth_disabled": True})
    failed = await send_and_wait(panel, {"function": "scan_to_email", "to": ["x@fabrikam.example"]})
    assert failed["status"] == "failed" and failed["reason_code"] == "smtp_auth_disabled"

    # The log line that says why carries the job's trace id: from the log to the whole trace.
    [root] = await _root_for(otlp_sink, failed["job_id"])
    lines = [
        json.loads(line)
        for part in stack.parts
        if part.name.startswith("mail-service")
        for line in part.output
        if failed["job_id"] in line and line.startswith("{")
    ]
    assert any(entry["level"] == "warning" and entry.get("trace_id") == root.trace_id for entry in lines), (
        lines
    )

    # Gauges are read every FLEETMAIL_METRICS_POLL_S (2 s here): wait for the figure.
    async def alert_open(count: int) -> bool:
        notifier = await scrape(stack, "notifier")
        assert total(notifier, "fleetmail_alerts_open", tenant=tenant, cause="smtp_auth_disabled") == count
        return True

    await eventually(lambda: alert_open(1), within=10)
    await emulator_http.post(mailboxes, json={"address": admin, "smtp_auth_disabled": False})
    # A 4xx on DATA: deferred once, then sent.
    await emulator_http.post(
        f"{stack.smtp_control_url}/_emulator/faults", json={"stage": "data", "code": 451, "count": 1}
    )
    ok = await send_and_wait(panel, {"function": "scan_to_email", "to": ["x@fabrikam.example"]})
    assert ok["status"] == "sent"
    principal = Principal(tenant_id=tenant, kind=PrincipalKind.ADMINISTRATOR, address=admin)
    [refreshed] = await request_tokens(stack, principal, 1, force_refresh=True)
    assert refreshed.outcome is AccessTokenOutcome.GRANTED

    gateway = await scrape(stack, "job-gateway")
    assert total(gateway, "fleetmail_jobs_received_total", tenant=tenant, channel="http") == 2
    assert (
        total(
            gateway,
            "fleetmail_jobs_received_total",
            tenant=tenant,
            function="scan_to_email",
            provider="microsoft",
        )
        == 2
    )

    mail = await scrape(stack, "mail-service")
    labels = {"tenant": tenant, "function": "scan_to_email", "provider": "microsoft"}
    assert total(mail, "fleetmail_jobs_sent_total", **labels) == 1
    assert total(mail, "fleetmail_jobs_deferred_total", **labels) == 1
    assert total(mail, "fleetmail_jobs_failed_total", **labels, reason="smtp_auth_disabled") == 1
    assert total(mail, "fleetmail_delivery_latency_seconds_count", **labels) == 1
    assert 0 < total(mail, "fleetmail_delivery_latency_seconds_sum", **labels) < 60

    token = await scrape(stack, "token-service")
    assert total(token, "fleetmail_token_requests_total", outcome="granted") >= 2
    assert total(token, "fleetmail_token_refreshes_total", provider="microsoft", result="ok") >= 1

    async def gauges() -> bool:
        token = await scrape(stack, "token-service")
        assert total(token, "fleetmail_grants", provider="microsoft", status="active") >= 1
        # A Microsoft grant dies after 90 days without use: the gauge says so.
        left = total(token, "fleetmail_grant_time_to_predicted_death_seconds", tenant=tenant)
        assert 89 * 86400 < left <= 90 * 86400
        mail = await scrape(stack, "mail-service")
        assert [
            s
            for s in mail
            if s.name == "fleetmail_consumer_pending" and s.labels["consumer"] == "mail-service"
        ]
        return True

    await eventually(gauges, within=10)
    # The delivery that worked resolved the alert: the gauge falls back, the transitions count.
    await eventually(lambda: alert_open(0), within=10)
    notifier = await scrape(stack, "notifier")
    for transition in ("raised", "resolved"):
        assert (
            total(
                notifier,
                "fleetmail_alerts_transitions_total",
                tenant=tenant,
                cause="smtp_auth_disabled",
                transition=transition,
            )
            == 1
        )
    # With every kind of job outcome on the scrape endpoints, the dashboard's queries all match.
    await dashboard_series_are_exposed(stack)


async def test_label_sets_stay_bounded_after_1000_reply_inboxes(stack, emulator_http) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)

    def series(samples: list[Sample]) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
        return {(s.name, tuple(sorted(s.labels.items()))) for s in samples if s.name.startswith("messaging_")}

    await request_tokens(stack, principal, 10)  # the token-request series exist from here on
    before = series(await scrape(stack, "token-service"))
    replies = await request_tokens(stack, principal, 1000)
    assert len(replies) == 1000
    after = series(await scrape(stack, "token-service"))
    # 1,000 requests, each answered on its own reply inbox: not one new label set.
    assert after == before, sorted(after - before)[:5]
    assert not [s for s in after if any(re.search(r"_INBOX[._]", v) for _, v in s[1])]
    assert any(dict(labels).get("messaging_destination_name") == "_INBOX" for _, labels in after)


# Series that only appear after an incident (a redelivery): declared by the services, absent
# from a scrape until the first one happens.
AFTER_AN_INCIDENT = {"fleetmail_consumer_redeliveries_total"}


async def dashboard_series_are_exposed(stack) -> None:
    """Every series the Grafana dashboard queries is one the services expose."""
    dashboard = json.loads((Path(__file__).parents[2] / "deploy" / "grafana" / "fleetmail.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(expressions) >= 10
    # Series names, not the label names in `by (…)` clauses or legends.
    bare = [re.sub(r"\b(?:by|without)\s*\([^)]*\)|\{[^}]*\}", "", e) for e in expressions]
    named = {n for e in bare for n in re.findall(r"\b(?:fleetmail|messaging|http)_[a-z_]+\b", e)}
    exposed = {s.name for service in SERVICES for s in await scrape(stack, service)}
    missing = named - exposed - AFTER_AN_INCIDENT
    assert not missing, f"the dashboard queries series no service exposes: {sorted(missing)}"
