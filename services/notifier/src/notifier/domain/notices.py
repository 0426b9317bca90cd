"""Notices to an alert's channels (webhooks, e-mail recipients): where they go, what they
carry, and when a failed one is tried again. Pure; the outbox and the dispatcher do the I/O.

Each alert transition (raised, resolved) makes one delivery per endpoint, with an id made of
the alert, the transition and the endpoint: putting it twice (an event redelivered after a
restart) changes nothing, so a receiver gets each notice once. A failure is retried later
(1 s, 2 s, 4 s … up to 5 min, at most `max_attempts` times) and then marked failed —
visible, never silently dropped. An endpoint that keeps failing opens its circuit: nothing
is sent to it for a cool-down, then one delivery tries it again. The throttle keeps a
flapping provider from flooding an endpoint: past `per_minute` calls, deliveries wait.

Webhook calls carry `X-Fleetmail-Signature: sha256=<hex HMAC-SHA256 of the raw body>` under
the tenant's `webhook_secret` credential; the receiver recomputes it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any, Literal

from fleetmail_contracts.addresses import is_address
from fleetmail_contracts.tenants import NotificationSettings

from .events import RESOLVED_NOTICE

DeliveryState = Literal["pending", "delivered", "failed"]
MAILTO = "mailto:"

NO_RELAY = (
    "e-mail: no working path — the notifier has no relay (FLEETMAIL_NOTIFIER_SMTP_HOST); "
    "the tenant's own grant is never used for alerts"
)
"""Named on an alert whose tenant wants e-mail when no relay is configured."""

SIGN_IN_NOTICE = "sign_in.requested"
"""An e-mail to a user whose job waits for their sign-in (the tenant's `sign_in_email`)."""
NO_ADMINISTRATOR_ADDRESS = (
    "e-mail to the user: not sent — the tenant has no administrator address to answer it"
)
OUTSIDE_DOMAINS = "e-mail to the user: not sent — the address is outside the tenant's mail domains"


@dataclass(frozen=True)
class Delivery:
    """One notice to one endpoint (a webhook URL or `mailto:` a recipient)."""

    delivery_id: str
    tenant_id: str
    url: str
    event: str
    body: str
    created_at: datetime
    next_attempt_at: datetime
    state: DeliveryState = "pending"
    attempts: int = 0
    last_error: str | None = None

    @property
    def alert_id(self) -> str | None:
        alert_id = json.loads(self.body).get("alert_id")
        return str(alert_id) if alert_id else None


def delivery(tenant_id: str, url: str, event: str, payload: dict[str, Any], now: datetime) -> Delivery:
    body = json.dumps(payload, default=str, sort_keys=True)
    delivery_id = hashlib.sha256(f"{payload['alert_id']}|{event}|{url}".encode()).hexdigest()[:32]
    return Delivery(delivery_id, tenant_id, url, event, body, created_at=now, next_attempt_at=now)


def recipient_refusal(recipient: str) -> str | None:
    """Why an alert recipient is skipped: it must be one plain address, or a line break would
    break every alert mail and a list would add recipients on the operator's relay."""
    if is_address(recipient):
        return None
    return (
        f"e-mail: recipient {recipient!r} skipped: not a single e-mail address "
        "(user@example.com, without a display name, comma or line break)"
    )


def endpoints(notifications: NotificationSettings, *, relay: bool) -> tuple[list[str], list[str]]:
    """Where a tenant's notices go, and the channel problems to note on the alert: without a
    relay, e-mail recipients get nothing (the tenant's grant is never used) and the alert says
    so; a recipient that is not one plain address (saved before the rule) is skipped and named."""
    urls = [webhook.url for webhook in notifications.webhooks]
    recipients = notifications.email_recipients
    if recipients and not relay:
        return urls, [NO_RELAY]
    refusals = [why for recipient in recipients if (why := recipient_refusal(recipient)) is not None]
    mail = [f"{MAILTO}{recipient}" for recipient in recipients if recipient_refusal(recipient) is None]
    return urls + mail, refusals


def sign_in_request(
    alert_id: str, user: str, administrator: str, device_id: str | None, job_waits: bool = True
) -> dict[str, Any]:
    """The body of the e-mail asking a user to sign in, worded by its cause: a job of theirs
    that waits (`job_waits`), or a sign-in no longer accepted with no job waiting yet. It goes
    From the relay, whose address it is (never a tenant-chosen one), with the administrator
    address as Reply-To and named in the text: the people it reaches know whom to ask."""
    where = f"device {device_id}" if device_id else "the device you use"
    if job_waits:
        title = "Sign in to send your job"
        detail = (
            f"A job you sent from {where} waits for your OAuth sign-in and goes out by itself "
            "after it. Without a sign-in it is not sent."
        )
    else:
        title = "Sign in again to send from the fleet's devices"
        detail = (
            "Your OAuth sign-in for sending from the fleet's devices is no longer accepted. "
            "Your next job will wait until you sign in again."
        )
    return {
        "alert_id": alert_id,
        "reply_to": administrator,
        "to": user,
        "device_id": device_id,
        "title": title,
        "detail": f"{detail}\n\nSent for your administrator, {administrator}: reply to reach them.",
        "remedy": f"At {where}, open the OAuth screen and sign in as {user}.",
    }


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_headers(item: Delivery, secret: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Fleetmail-Event": item.event,
        "X-Fleetmail-Delivery": item.delivery_id,
        "X-Fleetmail-Signature": signature(secret, item.body.encode()),
    }


def _sign_in_email(payload: dict[str, Any], relay: str) -> EmailMessage:
    message = EmailMessage()
    # From the relay's own address: a tenant's administrator address is theirs to choose, and
    # the relay sending From it would let one tenant mail as any address the relay may use.
    message["From"], message["To"] = relay, payload["to"]
    reply_to = payload.get("reply_to") or payload.get("from")  # deliveries queued before
    if reply_to:
        message["Reply-To"] = reply_to
    message["Subject"] = f"[fleetmail] {payload['title']}"
    message.set_content(f"{payload['detail']}\n\nWhat to do: {payload['remedy']}\n")
    return message


def email_of(item: Delivery, sender: str) -> EmailMessage:
    payload = json.loads(item.body)
    if item.event == SIGN_IN_NOTICE:
        return _sign_in_email(payload, sender)
    message = EmailMessage()
    resolved = item.event == RESOLVED_NOTICE
    message["From"], message["To"] = sender, item.url.removeprefix(MAILTO)
    message["Subject"] = ("[fleetmail] Recovered: " if resolved else "[fleetmail] ") + payload.get(
        "title", "alert"
    )
    lines = [
        payload.get("recovered") if resolved else payload.get("detail", ""),
        "",
        f"What to do: {payload['remedy']}" if payload.get("remedy") and not resolved else "",
        f"Tenant: {payload.get('tenant_id')}   Alert: {payload.get('alert_id')}   Severity: {payload.get('severity')}",
    ]
    message.set_content("\n".join(line for line in lines if line is not None))
    return message


def backoff_s(attempt: int) -> float:
    return float(min(300, 2 ** max(0, attempt - 1)))


@dataclass(frozen=True)
class Postponed:
    """A delivery that did not go out: when it is tried again, or that it gave up."""

    attempts: int
    state: DeliveryState
    next_attempt_at: datetime
    last_error: str

    @property
    def gave_up(self) -> bool:
        return self.state == "failed"


def postpone(
    item: Delivery, delay_s: float, error: str, now: datetime, *, spend: bool, max_attempts: int
) -> Postponed:
    """`spend`: the try counts towards `max_attempts` (a throttled one does not)."""
    attempts = item.attempts + (1 if spend else 0)
    return Postponed(
        attempts,
        "failed" if attempts >= max_attempts else "pending",
        now + timedelta(seconds=delay_s),
        error,
    )


@dataclass
class Circuit:
    """Per endpoint: closed (sending), open until `open_until` after repeated failures, and
    the calls of the last minute (the throttle)."""

    failures: int = 0
    open_until: datetime | None = None
    sent: list[datetime] = field(default_factory=list)

    def is_open(self, now: datetime) -> bool:
        return self.open_until is not None and self.open_until > now

    def throttled_for(self, now: datetime, per_minute: int) -> float | None:
        """Seconds until the endpoint may be called again; None: call it now (counted)."""
        self.sent = [moment for moment in self.sent if (now - moment).total_seconds() < 60]
        if len(self.sent) >= per_minute:
            return 60 - (now - self.sent[0]).total_seconds()
        self.sent.append(now)
        return None

    def succeeded(self) -> None:
        self.failures = 0

    def failed(self, now: datetime, breaker_failures: int, cooldown_s: float) -> bool:
        """Counts a failure; True when this opened the circuit."""
        self.failures += 1
        if self.failures >= breaker_failures:
            self.open_until = now + timedelta(seconds=cooldown_s)
            return True
        return False
