"""mail-service's wiring: every object built here, typed, on the service skeleton.

Constructors do no I/O; the buckets and the object store are opened by start hooks, and the
SMTP connections closed by a stop hook (`ServiceRuntime` runs them in order).
"""

from __future__ import annotations

import logging
import os
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from faststream import AckPolicy, FastStream
from faststream.nats import ConsumerConfig, NatsBroker, NatsMessage, PullSub
from fleetmail_contracts import streams
from fleetmail_contracts.jobs import JOBS_WILDCARD
from fleetmail_contracts.streams import TOKEN_EVENT_PREFIX
from fleetmail_contracts.tokens import Provider
from fleetmail_contracts.transports import Transport
from fleetmail_runtime.bus import jobs_stream
from fleetmail_runtime.lifecycle import ServiceRuntime

from .adapters.attachments import ObjectStoreAttachments
from .adapters.events import BusEventPublisher
from .adapters.gmail_api import GmailApiDelivery
from .adapters.graph import GraphDelivery
from .adapters.jetstream import InFlight, JetStreamJob
from .adapters.lease import KvLease
from .adapters.ledger import KvDeliveryLedger
from .adapters.limits import KvMailboxLimits
from .adapters.parking import KvParkingLot
from .adapters.smtp import SmtpDelivery
from .adapters.sweep import AttachmentSweep
from .adapters.tokens import BusTokenClient
from .delivery import Deliverer
from .domain.decisions import RetryPolicy
from .domain.limits import MailboxLimits
from .handler import Failures, JobHandler, TokenEvents
from .pacing import MailboxGate, PacingPolicy
from .settings import MailSettings
from .telemetry import AttachmentStoreGauges

SERVICE = "mail-service"
DURABLE = streams.MAIL_JOBS_CONSUMER[1]
SWEEP_LEASE_KEY = "lease.attachment-sweep"
"""In the delivery ledger's bucket, beside its hex job ids: which replica sweeps attachments."""
log = logging.getLogger(SERVICE)


def utc_now() -> datetime:
    return datetime.now(UTC)


def replica_name() -> str:
    """This process among the service's replicas: its host (a pod's name) and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class MailService:
    runtime: ServiceRuntime
    app: FastStream
    handler: JobHandler
    deliverer: Deliverer
    ledger: KvDeliveryLedger
    parking: KvParkingLot
    transport: SmtpDelivery
    replica: str


def provider_limits(settings: MailSettings) -> dict[Provider, MailboxLimits]:
    google_rate = settings.google_messages_per_minute
    return {
        Provider.MICROSOFT: MailboxLimits(
            settings.microsoft_concurrent_submissions,
            60 / settings.microsoft_messages_per_minute,
            settings.microsoft_recipients_per_message,
            settings.microsoft_daily_recipients,
            quota_counts_recipients=True,
            quota_window_s=settings.quota_window_s,
        ),
        Provider.GOOGLE: MailboxLimits(
            settings.google_concurrent_submissions,
            60 / google_rate if google_rate else 0.0,
            settings.google_recipients_per_message,
            settings.google_daily_messages,
            quota_counts_recipients=False,
            quota_window_s=settings.quota_window_s,
        ),
    }


API_RECIPIENTS_PER_MESSAGE = 1_000_000
"""A mail API reads the recipients from the message's headers: a message is never split
(the gateway bounds a job's recipients well under the APIs' own limits)."""


def api_limits(settings: MailSettings) -> dict[Transport, MailboxLimits]:
    """Per-mailbox limits of the mail APIs; the daily quota is the mailbox's, whatever the way."""
    return {
        Transport.GRAPH: MailboxLimits(
            settings.graph_concurrent_requests,
            settings.graph_request_window_s / settings.graph_requests_per_window,
            API_RECIPIENTS_PER_MESSAGE,
            settings.microsoft_daily_recipients,
            quota_counts_recipients=True,
            quota_window_s=settings.quota_window_s,
        ),
        Transport.GMAIL_API: MailboxLimits(
            settings.google_concurrent_submissions,
            60 / settings.gmail_api_messages_per_minute,
            API_RECIPIENTS_PER_MESSAGE,
            settings.google_daily_messages,
            quota_counts_recipients=False,
            quota_window_s=settings.quota_window_s,
        ),
    }


def build_app(
    settings: MailSettings,
    *,
    clock: Callable[[], datetime] = utc_now,
    jitter: Callable[[], float] = random.random,
) -> MailService:
    runtime = ServiceRuntime(SERVICE, settings.common, mongo=False, bus_timeout_s=settings.token_timeout_s)
    replica = replica_name()
    transport = SmtpDelivery(
        settings.smtp_ca_bundle,
        settings.smtp_timeout_s,
        settings.helo_name,
        settings.smtp_connections_per_sender,
        settings.smtp_idle_timeout_s,
        outbound=settings.common.outbound_policy(),
    )
    graph = GraphDelivery(
        settings.graph_url,
        settings.api_ca_bundle,
        settings.api_timeout_s,
        clock,
        settings.graph_upload_hosts,
        settings.api_retry_after_max_s,
    )
    gmail = GmailApiDelivery(
        settings.gmail_api_url,
        settings.api_ca_bundle,
        settings.api_timeout_s,
        clock,
        settings.api_retry_after_max_s,
    )
    attachments = ObjectStoreAttachments(runtime.broker)
    ledger = KvDeliveryLedger(runtime.broker, settings.ledger_write_timeout_s)
    events = BusEventPublisher(runtime.broker, SERVICE, replica)
    limits = KvMailboxLimits(runtime.broker)
    deliverer = Deliverer(
        runtime.tenants,
        BusTokenClient(runtime.bus, settings.token_timeout_s),
        transport,
        attachments,
        clock,
        {
            Provider.MICROSOFT: settings.max_message_bytes_microsoft,
            Provider.GOOGLE: settings.max_message_bytes_google,
        },
        MailboxGate(
            limits,
            PacingPolicy(
                settings.pacing_horizon_s,
                settings.submission_lease_s,
                settings.submission_poll_s,
            ),
            clock,
        ),
        provider_limits(settings),
        ledger,
        apis={Transport.GRAPH: graph, Transport.GMAIL_API: gmail},
        api_limits=api_limits(settings),
        api_size_limits={Transport.GMAIL_API: settings.max_message_bytes_gmail_api},
        sent_items={Transport.GRAPH: graph, Transport.GMAIL_API: gmail},
    )
    failures = Failures(
        SERVICE, events, runtime.tenants, clock, settings.park_timeout_s, settings.administrator_wait_s
    )
    parking = KvParkingLot(
        runtime.broker,
        timedelta(seconds=settings.park_timeout_s),
        failures.parking_expired,
        deliverer.has_grant,
        clock,
        administrator_timeout=timedelta(seconds=settings.administrator_wait_s),
    )
    sweep_lease = KvLease(
        runtime.broker,
        streams.DELIVERY_LEDGER_BUCKET,
        SWEEP_LEASE_KEY,
        replica,
        # Renewed at each sweep: another replica takes over two sweeps after this one stopped.
        timedelta(seconds=settings.attachment_sweep_s * 2.5),
        clock,
    )
    sweep = AttachmentSweep(
        runtime.broker,
        attachments,
        parking,
        sweep_lease,
        clock,
        grace=timedelta(seconds=settings.attachment_orphan_grace_s),
        retention=timedelta(days=settings.common.dead_letter_retention_days),
        max_bytes=settings.common.attachments_max_bytes,
        alert_percent=settings.attachment_store_alert_percent,
    )
    policy = RetryPolicy(settings.max_deliver, settings.retry_base_s, settings.retry_max_s)
    handler = JobHandler(deliverer, ledger, events, parking, failures, policy, clock, jitter)
    in_flight = InFlight()

    runtime.on_start(ledger.open)
    runtime.on_start(parking.open)
    runtime.on_start(limits.open)
    runtime.on_start(attachments.open)
    runtime.on_start(sweep_lease.open)
    runtime.on_stop(transport.close)
    runtime.on_stop(graph.close)
    runtime.on_stop(gmail.close)
    runtime.every(settings.park_sweep_s, parking.sweep, "the sweep of parked jobs")
    runtime.every(settings.ack_wait_s / 3, in_flight.keep_alive, "telling JetStream jobs are in progress")
    runtime.every(settings.attachment_sweep_s, sweep.sweep, "the attachment sweep")
    runtime.gauges(
        [streams.MAIL_JOBS_CONSUMER],
        AttachmentStoreGauges(attachments.used_bytes, settings.common.attachments_max_bytes).poll,
    )
    _subscribe(runtime.broker, settings, handler, in_flight, TokenEvents(deliverer, parking))

    async def announce_ready() -> None:
        log.info("mail-service ready (replica %s)", replica)

    app = FastStream(runtime.broker, lifespan=runtime.lifespan, after_startup=[announce_ready])
    return MailService(runtime, app, handler, deliverer, ledger, parking, transport, replica)


def _subscribe(
    broker: NatsBroker,
    settings: MailSettings,
    handler: JobHandler,
    in_flight: InFlight,
    token_events: TokenEvents,
) -> None:
    async def on_job() -> None:
        # The message is taken from the context, not injected as a parameter: FastStream
        # resolves an injected message in a worker thread, a thread hop per job.
        msg: NatsMessage = broker.context.get_local("message")
        in_flight.messages.add(msg)
        try:
            await handler.handle(JetStreamJob(msg))
        finally:
            in_flight.messages.discard(msg)

    jobs = broker.subscriber(
        JOBS_WILDCARD,
        stream=jobs_stream(settings.common),
        durable=DURABLE,
        pull_sub=PullSub(batch_size=settings.batch_size, timeout=1.0),
        config=ConsumerConfig(max_deliver=settings.max_deliver, ack_wait=settings.ack_wait_s),
        ack_policy=AckPolicy.MANUAL,
    )
    jobs(on_job)

    async def on_token_event(event: dict[str, Any]) -> None:
        await token_events.on_event(event)

    # A plain subscription beside the stream: it sees token events as they are published.
    # no_reply: JetStream publishes are requests, and a reply from here would race the
    # stream's acknowledgement to the publisher.
    broker.subscriber(f"{TOKEN_EVENT_PREFIX}*", no_reply=True)(on_token_event)
