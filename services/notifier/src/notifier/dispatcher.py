"""Sends what the outbox holds: webhooks signed with the tenant's key, e-mail through the
operator's relay; retries with backoff, a circuit breaker and a throttle per endpoint (the
rules are in `domain.notices`). A delivery that gives up is named on its alert."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .domain.notices import (
    MAILTO,
    Circuit,
    Delivery,
    backoff_s,
    email_of,
    postpone,
    recipient_refusal,
    webhook_headers,
)
from .errors import ChannelError, NoMailRelay, NoticeRefused, NoWebhookSecret
from .ports import AlertStore, Clock, MailSender, Outbox, TokenService, WebhookSender

log = logging.getLogger("notifier.webhooks")

NO_SECRET_RETRY_S = 60.0


@dataclass(frozen=True)
class DispatchRules:
    max_attempts: int = 10
    breaker_failures: int = 5
    breaker_cooldown_s: float = 60.0
    per_minute: int = 30
    batch: int = 100


class Dispatcher:
    def __init__(
        self,
        outbox: Outbox,
        alerts: AlertStore,
        tokens: TokenService,
        webhooks: WebhookSender,
        mail: MailSender | None,
        rules: DispatchRules,
        *,
        clock: Clock,
    ) -> None:
        self._outbox = outbox
        self._alerts = alerts
        self._tokens = tokens
        self._webhooks = webhooks
        self._mail = mail
        self._rules = rules
        self._clock = clock
        self._circuits: dict[str, Circuit] = {}

    async def dispatch(self) -> int:
        """Send what is due; returns how many were delivered."""
        delivered = 0
        for item in await self._outbox.due(self._clock(), self._rules.batch):
            if await self._send(item):
                delivered += 1
        return delivered

    async def _send(self, item: Delivery) -> bool:
        now = self._clock()
        circuit = self._circuits.setdefault(item.url, Circuit())
        if circuit.is_open(now):
            return False  # circuit open: try after the cool-down (attempts are not spent)
        wait_s = circuit.throttled_for(now, self._rules.per_minute)
        if wait_s is not None:
            await self._postpone(item, wait_s, "throttled", spend=False)
            return False
        try:
            await self._deliver(item)
        except NoWebhookSecret as exc:
            await self._postpone(item, NO_SECRET_RETRY_S, str(exc), spend=True)
            return False
        except NoticeRefused as exc:
            await self._postpone(item, 0, str(exc), spend=True, give_up=True)
            return False
        except ChannelError as exc:
            if circuit.failed(self._clock(), self._rules.breaker_failures, self._rules.breaker_cooldown_s):
                log.warning(
                    "webhook %s failed %d times: circuit open for %g s",
                    item.url,
                    circuit.failures,
                    self._rules.breaker_cooldown_s,
                )
            await self._postpone(item, backoff_s(item.attempts + 1), str(exc), spend=True)
            return False
        circuit.succeeded()
        await self._outbox.delivered(item.delivery_id, self._clock())
        return True

    async def _deliver(self, item: Delivery) -> None:
        if item.url.startswith(MAILTO):
            if self._mail is None:
                raise NoMailRelay()
            if (why := recipient_refusal(item.url.removeprefix(MAILTO))) is not None:
                raise NoticeRefused(why)  # queued before recipients were checked when saved
            await self._mail.send(email_of(item, self._mail.sender))
            return
        secret = await self._tokens.webhook_secret(item.tenant_id)
        if not secret:
            raise NoWebhookSecret()
        await self._webhooks.post(item.url, item.body.encode(), webhook_headers(item, secret))

    async def _postpone(
        self, item: Delivery, delay_s: float, error: str, *, spend: bool, give_up: bool = False
    ) -> None:
        attempts = 0 if give_up else self._rules.max_attempts
        postponed = postpone(item, delay_s, error, self._clock(), spend=spend, max_attempts=attempts)
        await self._outbox.postponed(item.delivery_id, postponed)
        if postponed.gave_up:
            log.error(
                "webhook delivery %s to %s gave up after %d attempts: %s",
                item.delivery_id,
                item.url,
                postponed.attempts,
                error,
            )
            alert_id = item.alert_id
            if alert_id:
                await self._alerts.note_channel_problem(alert_id, f"{item.url}: gave up ({error})")
