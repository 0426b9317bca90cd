"""FastStream's NATS telemetry middleware, lean: only the spans and metrics fleetmail reads.

Reply inboxes (`_INBOX_<service>.<random>`) are folded into one name in span names and metric labels,
so a million token requests make one label value, not a million.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from faststream.nats.opentelemetry.provider import (
    NatsBatchTelemetrySettingsProvider,
    NatsTelemetrySettingsProvider,
)
from faststream.opentelemetry.consts import ERROR_TYPE, MESSAGING_DESTINATION_PUBLISH_NAME, MessageAction
from faststream.opentelemetry.middleware import BaseTelemetryMiddleware, TelemetryMiddleware
from nats.aio.msg import Msg
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.semconv.trace import SpanAttributes
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .spans import SpanScope

INBOX = "_INBOX"


def normalise_subject(subject: str) -> str:
    """A subject fit for a span name or a metric label: reply inboxes (`_INBOX.…`, or a
    service's own `_INBOX_<service>.…`, bus.inbox_prefix) become `_INBOX`."""
    if subject.startswith(INBOX):
        return INBOX
    return subject


class _Single(NatsTelemetrySettingsProvider):
    def get_publish_destination_name(self, cmd: Any) -> str:
        return normalise_subject(cmd.destination)

    def get_consume_destination_name(self, msg: Any) -> str:
        return normalise_subject(msg.raw_message.subject)


class _Batch(NatsBatchTelemetrySettingsProvider):
    def get_publish_destination_name(self, cmd: Any) -> str:
        return normalise_subject(cmd.destination)

    def get_consume_destination_name(self, msg: Any) -> str:
        return normalise_subject(msg.raw_message[0].subject)


_SINGLE, _BATCH = _Single(), _Batch()  # stateless: one of each serves every message


def _settings_provider(msg: Any) -> Any:
    """Called for every message published or consumed, so it only compares types."""
    if isinstance(msg, (list, tuple)):  # a batch subscriber's messages
        return _BATCH
    if msg is None or isinstance(msg, Msg):
        return _SINGLE
    return None  # key-value and object-store watches


_TRACE_PROPAGATOR = TraceContextTextMapPropagator()


def _remote_span(headers: Mapping[str, Any] | None) -> trace.SpanContext | None:
    """The producer's span a message's `traceparent` header names, if any."""
    if not headers or "traceparent" not in headers:
        return None
    found = trace.get_current_span(_TRACE_PROPAGATOR.extract(headers)).get_span_context()
    return found if found.is_valid else None


class _LeanTelemetry(BaseTelemetryMiddleware[Any]):
    """FastStream's telemetry middleware, doing only what fleetmail reads, per message.

    FastStream's middleware runs for every message published and consumed, whatever the
    sampling, and spans are most of telemetry's cost (about 60 µs each here, made and
    exported); its glue (baggage, FastStream context scopes) was another ~100 µs per message
    hop. fleetmail uses neither baggage nor FastStream's `CurrentSpan` injection, so:

    - **publish**: one PRODUCER span per message, where FastStream makes a "create" and a
      "publish" span; OpenTelemetry's messaging conventions ask for a separate create span
      only when messages are created apart from being sent (batches). The trace context goes
      in the headers, and `messaging.publish.duration` is recorded as before.
    - **consume, one message with a trace context** (every message fleetmail publishes): one
      CONSUMER "process" span, the child of the producer's span, current while the handler
      runs and ended after the ack (as FastStream does); `messaging.process.duration` as before.
    - **consume, a batch** (job-gateway's status projection, the notifier): one "process" span
      with a link to each message's producer span, where FastStream adds a "create" span as
      the batch's root.

    Anything else (a message without a trace context, a handler's return value, a batch
    published) keeps FastStream's behaviour.
    """

    __slots__ = ("_provider", "_redeliveries")

    def __init__(self, msg: Any, /, *, redeliveries: metrics.Counter | None, **kwargs: Any) -> None:
        super().__init__(msg, **kwargs)
        # The factory already ran once in the base class (into a name-mangled attribute).
        self._provider = self._BaseTelemetryMiddleware__settings_provider  # type: ignore[attr-defined]
        self._redeliveries = redeliveries

    async def on_receive(self) -> None:
        """Count the messages JetStream delivers more than once (a crash, a nack, or an ack
        that came too late), per stream and consumer. Here rather than in a middleware of its
        own: every middleware costs each message and each publish an object and a scope."""
        if self._redeliveries is None:
            return
        raws: list[Any] = self.msg if isinstance(self.msg, list) else [self.msg]
        for raw in raws:
            if raw is None or not (getattr(raw, "reply", None) or "").startswith("$JS.ACK."):
                continue
            meta = raw.metadata
            if meta is not None and meta.num_delivered and meta.num_delivered > 1:
                self._redeliveries.add(1, {"stream": meta.stream, "consumer": meta.consumer})

    async def publish_scope(self, call_next: Any, msg: Any) -> Any:
        provider = self._provider
        if provider is None or self._current_span is not None or len(msg.batch_bodies) > 1:
            return await super().publish_scope(call_next, msg)
        destination = provider.get_publish_destination_name(msg)
        attributes = provider.get_publish_attrs_from_cmd(msg)
        attributes[SpanAttributes.MESSAGING_OPERATION] = MessageAction.PUBLISH
        measured = {
            SpanAttributes.MESSAGING_SYSTEM: provider.messaging_system,
            SpanAttributes.MESSAGING_DESTINATION_NAME: destination,
        }
        span = self._tracer.start_span(
            f"{destination} {MessageAction.PUBLISH}", kind=trace.SpanKind.PRODUCER, attributes=attributes
        )
        started = time.perf_counter()
        try:
            with SpanScope(span):
                headers = msg.headers
                _TRACE_PROPAGATOR.inject(headers)  # the consumer's span hangs under this one
                msg.headers = headers
                return await call_next(msg)
        except Exception as exc:
            measured[ERROR_TYPE] = type(exc).__name__
            raise
        finally:
            self._metrics.observe_publish(measured, time.perf_counter() - started, 1)

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        provider = self._provider
        headers = msg.headers
        if provider is _BATCH and msg.batch_headers:
            parent = Context()  # a batch is a trace of its own, linked to its messages'
            links = [trace.Link(found) for h in msg.batch_headers if (found := _remote_span(h))]
        elif provider is _SINGLE and "baggage" not in headers and (found := _remote_span(headers)):
            parent = trace.set_span_in_context(trace.NonRecordingSpan(found))
            links = None
        else:
            return await super().consume_scope(call_next, msg)
        destination = provider.get_consume_destination_name(msg)
        attributes = provider.get_consume_attrs_from_message(msg)
        attributes[SpanAttributes.MESSAGING_OPERATION] = MessageAction.PROCESS
        measured = {
            SpanAttributes.MESSAGING_SYSTEM: provider.messaging_system,
            MESSAGING_DESTINATION_PUBLISH_NAME: destination,
        }
        span = self._tracer.start_span(
            f"{destination} {MessageAction.PROCESS}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        )
        # Ended by after_processed(), once the message is acked; a reply published by the
        # handler's return value hangs under it.
        self._current_span, self._origin_context = span, parent
        started = time.perf_counter()
        try:
            with SpanScope(span, end=False):
                return await call_next(msg)
        except Exception as exc:
            measured[ERROR_TYPE] = type(exc).__name__
            raise
        finally:
            count = attributes.get(SpanAttributes.MESSAGING_BATCH_MESSAGE_COUNT, 1)
            self._metrics.observe_consume(measured, time.perf_counter() - started, count)


class FleetmailNatsTelemetryMiddleware(NatsTelemetryMiddleware):
    """FastStream's NATS telemetry with reply inboxes folded into one name, only the spans
    fleetmail reads (`_LeanTelemetry`), and, given a counter, JetStream's redeliveries counted."""

    def __init__(self, *, redeliveries: metrics.Counter | None = None, **kwargs: Any) -> None:
        TelemetryMiddleware.__init__(
            self,
            settings_provider_factory=_settings_provider,
            # fleetmail's own counters count jobs; FastStream's durations are enough here.
            include_messages_counters=False,
            **kwargs,
        )
        self._redeliveries = redeliveries

    def __call__(self, msg: Any | None, /, *, context: Any) -> BaseTelemetryMiddleware[Any]:
        return _LeanTelemetry(
            msg,
            tracer=self._tracer,
            metrics_container=self._metrics,
            settings_provider_factory=self._settings_provider_factory,
            context=context,
            redeliveries=self._redeliveries,
        )


def redelivery_counter(meter: metrics.Meter) -> metrics.Counter:
    """`fleetmail.consumer.redeliveries`: JetStream messages delivered more than once."""
    return meter.create_counter(
        "fleetmail.consumer.redeliveries",
        unit="{message}",
        description="JetStream messages delivered more than once",
    )
