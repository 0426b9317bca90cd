"""`SpanScope` records what OpenTelemetry's `start_as_current_span` records: the same spans,
parents, ends, exceptions and statuses, block for block."""

from __future__ import annotations

import asyncio
from contextlib import nullcontext

import pytest
from fleetmail_runtime.telemetry import SpanScope
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture
def tracing() -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def summary(span: ReadableSpan) -> tuple[object, ...]:
    return (
        span.name,
        span.parent is not None,
        span.status.status_code,
        span.status.description,
        [(e.name, (e.attributes or {}).get("exception.type")) for e in span.events],
    )


def with_api(tracer: trace.Tracer, fail: BaseException | None) -> None:
    with tracer.start_as_current_span("outer"):
        with tracer.start_as_current_span("inner"):
            if fail is not None:
                raise fail


def with_scope(tracer: trace.Tracer, fail: BaseException | None) -> None:
    with SpanScope(tracer.start_span("outer")):
        with SpanScope(tracer.start_span("inner")):
            if fail is not None:
                raise fail


@pytest.mark.parametrize("fail", [None, ValueError("bad reply"), asyncio.CancelledError()])
def test_the_same_spans_as_start_as_current_span(
    tracing: tuple[trace.Tracer, InMemorySpanExporter], fail: BaseException | None
) -> None:
    tracer, exporter = tracing
    recorded = []
    for way in (with_api, with_scope):
        exporter.clear()
        with pytest.raises(type(fail)) if fail is not None else nullcontext():
            way(tracer, fail)
        spans = exporter.get_finished_spans()
        inner, outer = spans
        assert inner.parent is not None and inner.parent.span_id == outer.context.span_id
        recorded.append([summary(s) for s in spans])
    assert recorded[0] == recorded[1]
    if isinstance(fail, ValueError):
        assert recorded[1][0][2] is trace.StatusCode.ERROR  # a failure is on the span…
        assert recorded[1][0][4] == [("exception", "ValueError")]
    else:
        assert recorded[1][0][2] is trace.StatusCode.UNSET  # …a cancellation is not
    assert trace.get_current_span() is trace.INVALID_SPAN  # the context was restored


def test_a_span_left_open_stays_current_in_its_block_only(
    tracing: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = tracing
    span = tracer.start_span("process")
    with SpanScope(span, end=False) as current:
        assert trace.get_current_span() is current is span
    assert trace.get_current_span() is trace.INVALID_SPAN
    assert exporter.get_finished_spans() == ()
    span.end()
    assert [s.name for s in exporter.get_finished_spans()] == ["process"]
