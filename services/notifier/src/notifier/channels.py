"""Alert notices to webhooks and e-mail: an outbox in MongoDB, retried with backoff, behind
a circuit breaker and a throttle per endpoint (a webhook URL, an e-mail recipient).

Each alert transition (raised, resolved) puts one delivery per endpoint into the outbox,
with an id made of the alert, the transition and the endpoint: putting it twice (an event
redelivered after a restart) changes nothing, so a receiver gets each notice once. The
dispatcher sends what is due; a failure is retried later (1 s, 2 s, 4 s … up to 5 min,
at most `max_attempts` times) and then marked failed — visible, never silently dropped.
An endpoint that keeps failing opens its circuit: nothing is sent to it for a cool-down,
then one delivery tries it again. The throttle keeps a flapping provider from flooding an
endpoint: past `per_minute` calls, deliveries wait for the next minute.

E-mail goes through the notifier's own SMTP settings (an operator's relay), never through a
tenant's grant: the grant that failed is often the very cause of the alert.

Signature: header `X-Fleetmail-Signature: sha256=<hex HMAC-SHA256 of the raw body>` under
the tenant's `webhook_secret` credential (stored sealed by token-service); the receiver
recomputes it. Without a stored secret the call is not sent (its error says so).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import httpx
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

log = logging.getLogger("notifier.webhooks")

SecretOf = Callable[[str], Awaitable[str | None]]
GaveUp = Callable[[dict[str, Any], str], Awaitable[None]]


@dataclass(frozen=True)
class MailRelay:
    """The notifier's own way out for e-mail (settings), independent of any tenant grant."""

    host: str
    port: int
    security: str
    sender: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_bundle: str | None = None


def email_of(delivery: dict[str, Any], sender: str) -> EmailMessage:
    payload = json.loads(delivery["body"])
    message = EmailMessage()
    resolved = delivery["event"] == "alert.resolved"
    message["From"], message["To"] = sender, delivery["url"].removeprefix("mailto:")
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


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff_s(attempt: int) -> float:
    return float(min(300, 2 ** max(0, attempt - 1)))


@dataclass
class Circuit:
    """Per endpoint: closed (sending), open until `open_until` after repeated failures."""

    failures: int = 0
    open_until: float = 0.0
    sent_this_minute: list[float] = field(default_factory=list)


class Outbox:
    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]],
        database: str,
        secret_of: SecretOf,
        *,
        relay: MailRelay | None = None,
        gave_up: GaveUp | None = None,
        max_attempts: int = 10,
        breaker_failures: int = 5,
        breaker_cooldown_s: float = 60.0,
        per_minute: int = 30,
        timeout_s: float = 10.0,
    ) -> None:
        self._outbox = client[database]["webhook_deliveries"]
        self._secret_of = secret_of
        self.relay = relay
        self._gave_up = gave_up
        self.max_attempts = max_attempts
        self.breaker_failures = breaker_failures
        self.breaker_cooldown_s = breaker_cooldown_s
        self.per_minute = per_minute
        self._http = httpx.AsyncClient(timeout=timeout_s, trust_env=False)
        self._circuits: dict[str, Circuit] = {}

    async def close(self) -> None:
        await self._http.aclose()

    async def put(self, tenant_id: str, url: str, event: str, payload: dict[str, Any], now: datetime) -> None:
        body = json.dumps(payload, default=str, sort_keys=True)
        delivery_id = hashlib.sha256(f"{payload['alert_id']}|{event}|{url}".encode()).hexdigest()[:32]
        try:
            await self._outbox.insert_one(
                {
                    "_id": delivery_id,
                    "tenant_id": tenant_id,
                    "url": url,
                    "event": event,
                    "body": body,
                    "state": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "last_error": None,
                }
            )
        except DuplicateKeyError:
            pass  # already in the outbox: the event was seen before

    async def dispatch(self) -> int:
        """Send what is due; returns how many were delivered."""
        now = datetime.now(UTC)
        delivered = 0
        cursor = self._outbox.find({"state": "pending", "next_attempt_at": {"$lte": now}}).limit(100)
        for delivery in [d async for d in cursor]:
            if await self._send(delivery):
                delivered += 1
        return delivered

    def _circuit(self, url: str) -> Circuit:
        return self._circuits.setdefault(url, Circuit())

    async def _send(self, delivery: dict[str, Any]) -> bool:
        url, monotonic = delivery["url"], time.monotonic()
        circuit = self._circuit(url)
        if circuit.open_until > monotonic:
            return False  # circuit open: try after the cool-down (attempts are not spent)
        circuit.sent_this_minute = [t for t in circuit.sent_this_minute if monotonic - t < 60]
        if len(circuit.sent_this_minute) >= self.per_minute:
            await self._later(
                delivery, 60 - (monotonic - circuit.sent_this_minute[0]), "throttled", spend=False
            )
            return False
        circuit.sent_this_minute.append(monotonic)
        if url.startswith("mailto:"):
            ok, error = await self._mail(delivery)
        else:
            secret = await self._secret_of(delivery["tenant_id"])
            if not secret:
                await self._later(delivery, 60, "no webhook_secret stored for the tenant", spend=True)
                return False
            body = delivery["body"].encode()
            headers = {
                "Content-Type": "application/json",
                "X-Fleetmail-Event": delivery["event"],
                "X-Fleetmail-Delivery": delivery["_id"],
                "X-Fleetmail-Signature": signature(secret, body),
            }
            try:
                response = await self._http.post(url, content=body, headers=headers)
                ok, error = response.is_success, f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                ok, error = False, type(exc).__name__
        if ok:
            circuit.failures = 0
            await self._outbox.update_one(
                {"_id": delivery["_id"]},
                {"$set": {"state": "delivered", "delivered_at": datetime.now(UTC), "last_error": None}},
            )
            return True
        circuit.failures += 1
        if circuit.failures >= self.breaker_failures:
            circuit.open_until = monotonic + self.breaker_cooldown_s
            log.warning(
                "webhook %s failed %d times: circuit open for %g s",
                url,
                circuit.failures,
                self.breaker_cooldown_s,
            )
        await self._later(delivery, backoff_s(delivery["attempts"] + 1), error, spend=True)
        return False

    async def _mail(self, delivery: dict[str, Any]) -> tuple[bool, str]:
        relay = self.relay
        if relay is None:
            return False, "no e-mail relay configured (FLEETMAIL_NOTIFIER_SMTP_HOST)"
        context = ssl.create_default_context(cafile=relay.ca_bundle) if relay.ca_bundle else None
        try:
            await aiosmtplib.send(
                email_of(delivery, relay.sender),
                hostname=relay.host,
                port=relay.port,
                start_tls=relay.security == "starttls",
                use_tls=relay.security == "implicit_tls",
                username=relay.username,
                password=relay.password,
                tls_context=context,
                timeout=30,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            return False, f"{type(exc).__name__}: {exc}"[:300]
        return True, ""

    async def _later(self, delivery: dict[str, Any], delay_s: float, error: str, *, spend: bool) -> None:
        attempts = delivery["attempts"] + (1 if spend else 0)
        state = "failed" if attempts >= self.max_attempts else "pending"
        if state == "failed":
            log.error(
                "webhook delivery %s to %s gave up after %d attempts: %s",
                delivery["_id"],
                delivery["url"],
                attempts,
                error,
            )
        await self._outbox.update_one(
            {"_id": delivery["_id"]},
            {
                "$set": {
                    "state": state,
                    "attempts": attempts,
                    "last_error": error,
                    "next_attempt_at": datetime.now(UTC) + timedelta(seconds=delay_s),
                }
            },
        )

    async def failing(self, tenant_id: str) -> list[dict[str, Any]]:
        """Deliveries that are retrying or gave up: a failing channel is itself visible."""
        cursor = self._outbox.find(
            {"tenant_id": tenant_id, "state": {"$in": ["pending", "failed"]}, "attempts": {"$gt": 0}}
        )
        return [d async for d in cursor]
