"""The handler edge: one delivery attempt per job message, then its decision carried out.

`domain.decisions.decide` says what to do; this module only does it — publish the event,
dead-letter, NAK with a delay, ack, count — in the order that keeps a job's events in order
and its delivery recorded before its ack.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from fleetmail_contracts.dead_letters import DeadLetter as DeadLetterMessage
from fleetmail_contracts.jobs import JobBase, JobFunction, job_command_adapter, job_subject
from fleetmail_runtime.tenants import UnknownTenant
from opentelemetry import trace
from pydantic import ValidationError

from .delivery import Deliverer
from .domain.decisions import (
    Ack,
    AckRedelivery,
    AlreadyDelivered,
    DeadLetter,
    Decision,
    Outcome,
    Park,
    Retry,
    RetryPolicy,
    WaitForMailbox,
    decide,
    give_up,
    parking_expired,
)
from .domain.events import JobRef
from .errors import DeliveryError, InvalidJob
from .pacing import delay_until
from .ports import DeliveryLedger, EventPublisher, JobMessage, Parking, TenantReader
from .requeue import CARRIED, Carried, Requeue
from .telemetry import DELIVERY_LATENCY, JOBS_DEFERRED, JOBS_FAILED, JOBS_PARKED, JOBS_SENT

log = logging.getLogger("mail-service")
Labels = dict[str, str]


async def settle(task: asyncio.Task[None] | None) -> None:
    """Let a job's earlier event land before its next one."""
    if task is not None:
        await task


class Failures:
    """A job given up on, whichever way: a dead letter, a `failed` event, a count."""

    def __init__(
        self,
        service: str,
        events: EventPublisher,
        tenants: TenantReader,
        clock: Callable[[], datetime],
        park_timeout_s: float,
        administrator_wait_s: float,
    ) -> None:
        self.service = service
        self.events = events
        self.tenants = tenants
        self.clock = clock
        self.park_timeout_s = park_timeout_s
        self.administrator_wait_s = administrator_wait_s

    async def fail(
        self,
        failure: DeadLetter,
        job: JobRef | None,
        labels: Labels | None,
        *,
        subject: str,
        payload: bytes,
        headers: Mapping[str, str],
        deliveries: int,
    ) -> None:
        """Dead-letter the original message; announce the failure when the job could be read."""
        letter = DeadLetterMessage(
            dead_letter_id=uuid.uuid4().hex,
            original_subject=subject,
            # The original's Nats-* headers would make JetStream treat a resend as a duplicate,
            # and a resend starts with its whole retry budget.
            original_headers={
                k: v for k, v in headers.items() if not k.startswith("Nats-") and k not in CARRIED
            },
            payload_b64=base64.b64encode(payload).decode(),
            reason_code=failure.reason.value,
            detail=failure.detail,
            deliveries=deliveries,
            failed_at=self.clock(),
            service=self.service,
        )
        await self.events.dead_letter(letter)
        if job is None or labels is None:
            return
        await self.events.publish(job.failed(self.clock(), failure))
        JOBS_FAILED.add(1, {**labels, "reason": failure.reason.value})

    async def parking_expired(
        self, job: JobBase, function: JobFunction, user: str, administrator: bool
    ) -> None:
        """A parked job's user (or administrator) did not sign in in time (the parking lot's
        sweep calls this)."""
        try:
            provider = (await self.tenants.get(job.tenant_id)).provider.value
        except UnknownTenant:
            provider = "unknown"
        labels = {"function": function.value, "provider": provider, "tenant": job.tenant_id}
        await self.fail(
            parking_expired(
                user,
                self.administrator_wait_s if administrator else self.park_timeout_s,
                administrator=administrator,
            ),
            JobRef.of(job, function),
            labels,
            subject=job_subject(function),
            payload=job.model_dump_json().encode(),
            headers={},
            deliveries=1,
        )


class JobHandler:
    def __init__(
        self,
        deliverer: Deliverer,
        ledger: DeliveryLedger,
        events: EventPublisher,
        parking: Parking,
        failures: Failures,
        policy: RetryPolicy,
        clock: Callable[[], datetime],
        jitter: Callable[[], float],
    ) -> None:
        self.deliverer = deliverer
        self.ledger = ledger
        self.events = events
        self.parking = parking
        self.failures = failures
        self.policy = policy
        self.clock = clock
        self.jitter = jitter
        self.requeue = Requeue(parking, policy.max_deliver, clock)

    async def handle(self, message: JobMessage) -> None:
        carried = Carried.of(message.headers)
        attempt = carried.attempt
        try:
            job = job_command_adapter.validate_json(message.body)
        except ValidationError as exc:
            unreadable = InvalidJob(f"unreadable job: {exc.error_count()} errors")
            await self._dead_letter(give_up(unreadable), message, None, None)
            await message.ack()
            return
        function = JobFunction(job.function)
        if carried.not_before is not None and carried.not_before > self.clock():
            # Put back with a due time and delivered early: a wait, not an attempt.
            await self.requeue.wait(
                message, job.job_id, function, delay_until(carried.not_before, self.clock())
            )
            return
        ref = JobRef.of(job, function)
        trace.get_current_span().set_attributes(
            {"fleetmail.job_id": job.job_id, "fleetmail.tenant": job.tenant_id, "fleetmail.attempt": attempt}
        )
        labels = {"function": function.value, "provider": "unknown", "tenant": job.tenant_id}
        accepted: asyncio.Task[None] | None = None
        sender_address = ""
        outcome: Outcome
        # Only a redelivery, or a message put back, can find its job already sent (JetStream
        # drops duplicate publishes).
        first = message.attempt == 1 and not carried.copy
        if not first and await self.ledger.already_delivered(job.job_id):
            outcome = AlreadyDelivered()
        else:
            try:
                tenant = await self.deliverer.tenant(job.tenant_id)
                labels["provider"] = tenant.provider.value
                sender = self.deliverer.sender_of(job, function, tenant)
                sender_address = sender.address
                if first:
                    # Published while the delivery runs; awaited before any later event of the job.
                    accepted = asyncio.create_task(
                        self.events.publish(ref.accepted(self.clock(), sender.address))
                    )

                async def paced(goes_at: datetime) -> None:
                    await settle(accepted)
                    await self.events.publish(ref.paced(self.clock(), sender_address, goes_at))

                outcome = await self.deliverer.deliver(
                    job, function, tenant, sender, paced, redelivered=not first
                )
            except DeliveryError as exc:
                outcome = exc
        decision = decide(outcome, attempt=attempt, policy=self.policy, jitter=self.jitter)
        await self._carry_out(decision, message, job, ref, labels, accepted, sender_address, attempt)

    async def _wait(
        self, decision: WaitForMailbox, message: JobMessage, job: JobBase, ref: JobRef, sender: str
    ) -> None:
        """Back to the queue until the mailbox allows: a wait, not a failed attempt."""
        await self.events.publish(ref.waiting(self.clock(), sender, decision))
        await self.requeue.wait(message, job.job_id, ref.function, delay_until(decision.until, self.clock()))

    async def _carry_out(
        self,
        decision: Decision,
        message: JobMessage,
        job: JobBase,
        ref: JobRef,
        labels: Labels,
        accepted: asyncio.Task[None] | None,
        sender: str,
        attempt: int,
    ) -> None:
        if isinstance(decision, WaitForMailbox):
            await settle(accepted)
            await self._wait(decision, message, job, ref, sender)
            JOBS_DEFERRED.add(1, {**labels, "wait": decision.kind.value})
        elif isinstance(decision, Ack):
            delivered = decision.delivered
            await self.ledger.record(job.job_id, delivered.message_id)
            await settle(accepted)
            # The ledger holds the job now: the ack and the deletion of its documents may go
            # together (a redelivery finds the job in the ledger and never needs them), and the
            # `sent` event follows: once a job shows as sent, its documents are gone. (Sending
            # the record together with them was tried: the crash-and-dead-node test then saw
            # up to two batches of duplicates instead of at most one.)
            await asyncio.gather(message.ack(), self.deliverer.release(job))
            await self.events.publish(ref.sent(self.clock(), delivered))
            JOBS_SENT.add(1, labels)
            DELIVERY_LATENCY.record((self.clock() - job.submitted_at).total_seconds(), labels)
            # The 'sent' event is each job's record; the log keeps to what is unusual.
            log.debug("job %s sent from %s", job.job_id, delivered.sender)
        elif isinstance(decision, AckRedelivery):
            log.info("job %s was already delivered; acknowledging the redelivery", job.job_id)
            # Its documents too may have outlived a crash right after the ledger record.
            await asyncio.gather(message.ack(), self.deliverer.release(job))
        elif isinstance(decision, Park):
            await settle(accepted)
            deadline = await self.parking.park(
                job, ref.function, decision.user, message.body, administrator=decision.administrator
            )
            await self.events.publish(
                ref.parked(self.clock(), decision.user, deadline, administrator=decision.administrator)
            )
            await message.ack()
            JOBS_PARKED.add(1, labels)
            whom = (
                "the administrator token is acquired"
                if decision.administrator
                else f"{decision.user} signs in"
            )
            log.info("job %s parked until %s", job.job_id, whom)
        elif isinstance(decision, Retry):
            await settle(accepted)
            log.warning("job %s deferred (attempt %d): %s", job.job_id, attempt, decision.reason)
            await self.events.publish(ref.deferred(self.clock(), attempt, decision.delay_s, decision.reason))
            await self.requeue.failed(message, job.job_id, ref.function, decision.delay_s)
            JOBS_DEFERRED.add(1, labels)
        else:
            await settle(accepted)
            log.warning("job %s failed: %s", job.job_id, decision.detail)
            await self._dead_letter(decision, message, ref, labels, attempt)
            await message.ack()

    async def _dead_letter(
        self,
        decision: DeadLetter,
        message: JobMessage,
        ref: JobRef | None,
        labels: Labels | None,
        attempt: int | None = None,
    ) -> None:
        await self.failures.fail(
            decision,
            ref,
            labels,
            subject=message.subject,
            payload=message.body,
            headers=message.headers,
            deliveries=attempt or message.attempt,
        )


class TokenEvents:
    """Token events as they are published: a changed grant is forgotten at once, and a new
    grant resumes the jobs parked for it (a login user's, or the administrator's)."""

    def __init__(self, deliverer: Deliverer, parking: Parking) -> None:
        self.deliverer = deliverer
        self.parking = parking

    async def on_event(self, event: Mapping[str, Any]) -> None:
        principal = event.get("principal") or {}
        tenant_id, address = principal.get("tenant_id"), principal.get("address")
        if not tenant_id or not address:
            return
        self.deliverer.forget_token(tenant_id, address)
        if event.get("kind") != "acquired":
            return
        if principal.get("kind") == "user":
            await self.parking.resume_user(tenant_id, address)
        elif principal.get("kind") == "administrator":
            await self.parking.resume_administrator(tenant_id)
