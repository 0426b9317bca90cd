"""mail-service wiring, and the handler edge: the one place that acks, retries or dead-letters."""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from faststream import AckPolicy, FastStream
from faststream.nats import ConsumerConfig, NatsBroker, NatsMessage, PullSub
from fleetmail_contracts import streams
from fleetmail_contracts.dead_letters import DeadLetter, dead_letter_subject
from fleetmail_contracts.jobs import JOBS_WILDCARD, JobBase, JobFunction, job_command_adapter, job_subject
from fleetmail_contracts.mail_events import (
    FailureReason,
    MailAccepted,
    MailDeferred,
    MailEventBase,
    MailFailed,
    MailParked,
    MailSent,
    mail_event_subject,
)
from fleetmail_contracts.streams import TOKEN_EVENT_PREFIX
from fleetmail_contracts.tokens import Provider
from fleetmail_runtime.bus import declare_streams, jobs_stream, make_broker
from fleetmail_runtime.periodic import periodic
from fleetmail_runtime.telemetry import configure_telemetry, gauges_polled
from fleetmail_runtime.tenants import TenantDirectory, UnknownTenant
from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from opentelemetry import trace
from pydantic import ValidationError

from .adapters.smtp import SmtpDelivery
from .delivery import Deliverer
from .domain.compose import retry_delay
from .errors import AwaitingAuthorization, PermanentDeliveryError, TransientDeliveryError
from .parking import ParkingLot
from .settings import MailSettings
from .telemetry import DELIVERY_LATENCY, JOBS_DEFERRED, JOBS_FAILED, JOBS_PARKED, JOBS_SENT

SERVICE = "mail-service"
DURABLE = streams.MAIL_JOBS_CONSUMER[1]
log = logging.getLogger(SERVICE)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Wiring:
    broker: NatsBroker
    app: FastStream
    deliverer: Deliverer | None = None
    ledger: KeyValue | None = None
    parking: ParkingLot | None = None


async def settle(task: asyncio.Task[None] | None) -> None:
    """Let a job's earlier event land before its next one."""
    if task is not None:
        await task


class InFlight:
    """The jobs this replica is delivering. Every third of `ack_wait`, JetStream hears that
    each is still alive (one timer for all, not one task per job), so only a dead replica's
    jobs are redelivered."""

    def __init__(self) -> None:
        self.messages: set[NatsMessage] = set()

    async def keep_alive(self) -> None:
        for msg in list(self.messages):
            if msg in self.messages:
                await msg.in_progress()


async def already_delivered(ledger: KeyValue, job_id: str) -> bool:
    try:
        await ledger.get(job_id)
    except KeyNotFoundError:
        return False
    return True


async def record_delivery(ledger: KeyValue, job_id: str, message_id: str, within_s: float) -> None:
    """The SMTP server has the message: record it, retrying through a bus outage (a NATS node
    dying, a leader election) — a record lost here means the job is sent again."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            await ledger.create(job_id, message_id.encode())
            return
        except KeyWrongLastSequenceError:
            # Already there: another delivery, or this write's own answer lost on the way back.
            log.info("job %s was already in the delivery ledger", job_id)
            return
        except (NatsError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("job %s: recording its delivery failed (%s); trying again", job_id, exc)
            await asyncio.sleep(0.2)


def build_app(settings: MailSettings) -> Wiring:
    telemetry = configure_telemetry(SERVICE, settings.common)
    broker = make_broker(settings.common, SERVICE, telemetry)
    wiring = Wiring(broker=broker, app=FastStream(broker))
    tenants = TenantDirectory(broker)
    in_flight = InFlight()

    async def publish(event: MailEventBase) -> None:
        await broker.publish(
            event,
            mail_event_subject(event.kind),  # type: ignore[attr-defined]
            headers={"Nats-Msg-Id": event.event_id},
            stream=streams.EVENTS_STREAM,
        )

    def base(job_id: str, tenant_id: str, device_id: str, function: JobFunction) -> dict[str, object]:
        return {
            "event_id": uuid.uuid4().hex,
            "job_id": job_id,
            "tenant_id": tenant_id,
            "device_id": device_id,
            "function": function,
            "occurred_at": utc_now(),
        }

    async def dead_letter_payload(
        subject: str,
        payload: bytes,
        reason: str,
        detail: str,
        deliveries: int,
        headers: dict[str, str] | None = None,
    ) -> None:
        letter = DeadLetter(
            dead_letter_id=uuid.uuid4().hex,
            original_subject=subject,
            # The original's Nats-* headers would make JetStream treat a resend as a duplicate.
            original_headers={k: v for k, v in (headers or {}).items() if not k.startswith("Nats-")},
            payload_b64=base64.b64encode(payload).decode(),
            reason_code=reason,
            detail=detail,
            deliveries=deliveries,
            failed_at=utc_now(),
            service=SERVICE,
        )
        await broker.publish(letter, dead_letter_subject(SERVICE), stream=streams.DLQ_STREAM)

    async def on_parking_expired(job: JobBase, function: JobFunction, user: str) -> None:
        minutes = settings.park_timeout_s / 60
        detail = f"{user} did not sign in within {minutes:g} minutes; the job was not sent"
        await dead_letter_payload(
            job_subject(function),
            job.model_dump_json().encode(),
            FailureReason.AUTHORIZATION_TIMEOUT.value,
            detail,
            1,
        )
        await publish(
            MailFailed(
                **base(job.job_id, job.tenant_id, job.device_id, function),  # type: ignore[arg-type]
                reason_code=FailureReason.AUTHORIZATION_TIMEOUT,
                detail=detail,
                remedy="Sign in at the device's OAuth screen, then send the job again.",
            )
        )
        try:
            provider = (await tenants.get(job.tenant_id)).provider.value
        except UnknownTenant:
            provider = "unknown"
        labels = {"function": function.value, "provider": provider, "tenant": job.tenant_id}
        JOBS_FAILED.add(1, {**labels, "reason": FailureReason.AUTHORIZATION_TIMEOUT.value})

    async def dead_letter(msg: NatsMessage, reason: str, detail: str) -> None:
        raw = msg.raw_message
        deliveries = raw.metadata.num_delivered if raw.metadata else 1
        await dead_letter_payload(raw.subject, raw.data, reason, detail, deliveries, raw.headers)

    @broker.subscriber(
        JOBS_WILDCARD,
        stream=jobs_stream(settings.common),
        durable=DURABLE,
        pull_sub=PullSub(batch_size=settings.batch_size, timeout=1.0),
        config=ConsumerConfig(
            max_deliver=settings.max_deliver,
            ack_wait=settings.ack_wait_s,
        ),
        ack_policy=AckPolicy.MANUAL,
    )
    async def on_job() -> None:
        # The message is taken from the context, not injected as a parameter: FastStream
        # resolves an injected message in a worker thread, a thread hop per job.
        msg: NatsMessage = broker.context.get_local("message")
        in_flight.messages.add(msg)
        try:
            await handle_job(msg)
        finally:
            in_flight.messages.discard(msg)

    async def handle_job(msg: NatsMessage) -> None:
        deliverer, ledger = wiring.deliverer, wiring.ledger
        assert deliverer is not None and ledger is not None
        attempt = msg.raw_message.metadata.num_delivered if msg.raw_message.metadata else 1
        accepted: asyncio.Task[None] | None = None
        try:
            job = job_command_adapter.validate_json(msg.body)
        except ValidationError as exc:
            await dead_letter(
                msg, FailureReason.INVALID_JOB.value, f"unreadable job: {exc.error_count()} errors"
            )
            await msg.ack()
            return
        function = JobFunction(job.function)
        trace.get_current_span().set_attributes(
            {"fleetmail.job_id": job.job_id, "fleetmail.tenant": job.tenant_id, "fleetmail.attempt": attempt}
        )
        ids = (job.job_id, job.tenant_id, job.device_id, function)
        labels = {"function": function.value, "provider": "unknown", "tenant": job.tenant_id}
        # Only a redelivery can find its job already sent (JetStream drops duplicate publishes).
        if attempt > 1 and await already_delivered(ledger, job.job_id):
            log.info("job %s was already delivered; acknowledging the redelivery", job.job_id)
            await msg.ack()
            return
        try:
            tenant = await deliverer.tenant(job.tenant_id)
            labels["provider"] = tenant.provider.value
            sender = deliverer.sender_of(job, function, tenant)
            if attempt == 1:
                # Published while the delivery runs; awaited before any later event of the job.
                accepted = asyncio.create_task(publish(MailAccepted(**base(*ids), sender=sender.address)))  # type: ignore[arg-type]
            delivered = await deliverer.deliver(job, function, tenant, sender)
        except AwaitingAuthorization as exc:
            await settle(accepted)
            assert wiring.parking is not None
            deadline = await wiring.parking.park(job, function, exc.user, msg.body)
            await publish(MailParked(**base(*ids), user=exc.user, resume_deadline=deadline))  # type: ignore[arg-type]
            await msg.ack()
            JOBS_PARKED.add(1, labels)
            log.info("job %s parked until %s signs in", job.job_id, exc.user)
            return
        except TransientDeliveryError as exc:
            await settle(accepted)
            if attempt >= settings.max_deliver:
                await dead_letter(msg, FailureReason.RETRIES_EXHAUSTED.value, str(exc))
                await publish(
                    MailFailed(
                        **base(*ids),
                        reason_code=FailureReason.RETRIES_EXHAUSTED,
                        detail=f"gave up after {attempt} attempts: {exc}",
                        smtp_reply=exc.smtp_reply,
                    )
                )  # type: ignore[arg-type]
                await msg.ack()
                JOBS_FAILED.add(1, {**labels, "reason": FailureReason.RETRIES_EXHAUSTED.value})
                return
            delay = exc.retry_after_s or retry_delay(
                attempt, settings.retry_base_s, settings.retry_max_s, random.random()
            )
            log.warning("job %s deferred (attempt %d): %s", job.job_id, attempt, exc)
            await publish(
                MailDeferred(
                    **base(*ids),
                    attempt=attempt,
                    next_attempt_at=utc_now() + timedelta(seconds=delay),
                    reason=str(exc),
                )
            )  # type: ignore[arg-type]
            await msg.nack(delay=delay)
            JOBS_DEFERRED.add(1, labels)
            return
        except PermanentDeliveryError as exc:
            await settle(accepted)
            log.warning("job %s failed: %s", job.job_id, exc)
            await dead_letter(msg, exc.reason.value, str(exc))
            await publish(
                MailFailed(
                    **base(*ids),
                    reason_code=exc.reason,
                    detail=str(exc),
                    remedy=exc.remedy,
                    smtp_reply=exc.smtp_reply,
                )
            )  # type: ignore[arg-type]
            await msg.ack()
            JOBS_FAILED.add(1, {**labels, "reason": exc.reason.value})
            return
        await record_delivery(ledger, job.job_id, delivered.message_id, settings.ledger_write_timeout_s)
        await settle(accepted)
        sent = publish(
            MailSent(
                **base(*ids),  # type: ignore[arg-type]
                sender=delivered.sender,
                message_id=delivered.message_id,
                smtp_reply=delivered.result.reply,
                accepted_recipients=delivered.accepted,
                rejected_recipients=tuple(delivered.result.rejected),
            )
        )
        # The ledger holds the job now: the ack and the event may go together. (Sending the
        # record together with them was tried: the crash-and-dead-node test then saw up to
        # two batches of duplicates instead of at most one.)
        await asyncio.gather(msg.ack(), sent)
        JOBS_SENT.add(1, labels)
        DELIVERY_LATENCY.record((utc_now() - job.submitted_at).total_seconds(), labels)
        # The 'sent' event is each job's record; the log keeps to what is unusual.
        log.debug("job %s sent from %s", job.job_id, delivered.sender)

    # A plain subscription beside the stream: it sees token events as they are published.
    # no_reply: JetStream publishes are requests, and a reply from here would race the
    # stream's acknowledgement to the publisher.
    @broker.subscriber(f"{TOKEN_EVENT_PREFIX}*", no_reply=True)
    async def on_token_event(event: dict[str, Any]) -> None:
        principal = event.get("principal") or {}
        if wiring.deliverer is None or not principal.get("tenant_id") or not principal.get("address"):
            return
        wiring.deliverer.forget_token(principal["tenant_id"], principal["address"])
        if event.get("kind") == "acquired" and principal.get("kind") == "user" and wiring.parking is not None:
            await wiring.parking.resume_user(principal["tenant_id"], principal["address"])

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        await broker.connect()
        await declare_streams(broker, settings.common)
        await tenants.start()
        wiring.ledger = await broker.key_value(streams.DELIVERY_LEDGER_BUCKET)
        smtp = SmtpDelivery(
            settings.smtp_ca_bundle,
            settings.smtp_timeout_s,
            settings.helo_name,
            settings.smtp_connections_per_sender,
            settings.smtp_idle_timeout_s,
        )
        wiring.deliverer = Deliverer(
            broker,
            tenants,
            smtp,
            settings.token_timeout_s,
            utc_now,
            {
                Provider.MICROSOFT: settings.max_message_bytes_microsoft,
                Provider.GOOGLE: settings.max_message_bytes_google,
            },
        )
        wiring.parking = ParkingLot(
            broker,
            await broker.key_value(streams.PARKED_JOBS_BUCKET),
            timedelta(seconds=settings.park_timeout_s),
            on_parking_expired,
            wiring.deliverer.has_grant,
            utc_now,
        )
        try:
            async with (
                periodic(settings.park_sweep_s, wiring.parking.sweep, "the sweep of parked jobs"),
                periodic(
                    settings.ack_wait_s / 3, in_flight.keep_alive, "telling JetStream jobs are in progress"
                ),
                gauges_polled(telemetry, broker, [streams.MAIL_JOBS_CONSUMER]),
            ):
                yield
        finally:
            await smtp.close()
            await tenants.stop()
            telemetry.shutdown()

    async def announce_ready() -> None:
        log.info("mail-service ready")

    wiring.app = FastStream(broker, lifespan=lifespan, after_startup=[announce_ready])
    return wiring
