"""fleetmail's OTLP span encoder writes the bytes OpenTelemetry's own encoder writes."""

import math

import pytest
from fleetmail_runtime.otlp_encoding import OtlpSpanExporter, encode_spans
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)


class Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans):  # type: ignore[no-untyped-def]
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def provider(attributes: dict, schema_url: str = "") -> tuple[TracerProvider, Keep]:
    kept = Keep()
    tracer_provider = TracerProvider(resource=Resource(attributes, schema_url=schema_url))
    tracer_provider.add_span_processor(SimpleSpanProcessor(kept))
    return tracer_provider, kept


EVERY_VALUE = {
    "text": "fleetmail.events.v1.mail.sent",
    "unicode": "Größe ✉ 送信",
    "empty": "",
    "yes": True,
    "no": False,
    "zero": 0,
    "small": 7,
    "large": 2**62 + 5,
    "negative": -3,
    "most negative": -(2**63),
    "float": 3.25,
    "float zero": 0.0,
    "nan": math.nan,
    "texts": ("a", "", "ü"),
    "ints": (1, -1, 300),
    "floats": (0.5, -2.0),
    "bools": (True, False),
    "empty list": (),
}


def spans_of_every_shape() -> list[ReadableSpan]:
    service, kept = provider(
        {"service.name": "mail-service", "service.namespace": "fleetmail"}, "https://s/1"
    )
    other, kept_other = provider({"service.name": "other", "n": 1})
    tracer = service.get_tracer("fleetmail.mail-service")
    versioned = service.get_tracer(
        "faststream", "0.7.8", schema_url="https://opentelemetry.io/schemas/1.11.0"
    )
    remote = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("fleet", "a1"), ("vendor", "x=y")]),
    )
    local = SpanContext(trace_id=1, span_id=2, is_remote=False, trace_flags=TraceFlags(1))

    with tracer.start_as_current_span(
        "POST /v1/jobs", kind=SpanKind.SERVER, attributes={"url.path": "/v1/jobs"}
    ):
        with tracer.start_as_current_span("smtp send", kind=SpanKind.CLIENT) as span:
            span.set_attributes(EVERY_VALUE)
            span.add_event("exception", {"exception.type": "SMTPResponseException", "code": 421})
            span.add_event("")
            span.set_status(StatusCode.ERROR, "421 4.7.0 try again later")
        with tracer.start_as_current_span("ok", kind=SpanKind.INTERNAL) as span:
            span.set_status(StatusCode.OK)
    versioned.start_span(
        "fleetmail.jobs.v1.scan_to_email process",
        context=set_span_in_context(NonRecordingSpan(remote)),
        kind=SpanKind.CONSUMER,
        links=[Link(remote, {"why": "batch"}), Link(local)],
    ).end()
    versioned.start_span("", kind=SpanKind.PRODUCER).end()
    other.get_tracer("x").start_span("elsewhere", context=set_span_in_context(NonRecordingSpan(local))).end()
    # Interleaved resources and scopes: grouping must keep first-seen order.
    return [kept.spans[0], kept.spans[3], kept_other.spans[0], kept.spans[1], kept.spans[4], kept.spans[2]]


@pytest.mark.unit
def test_the_same_bytes_as_the_sdk_for_every_field_and_value_type() -> None:
    spans = spans_of_every_shape()
    expected = sdk_encode_spans(spans).SerializePartialToString()
    ours = encode_spans(spans)
    if ours != expected:  # say where, in terms a reader can follow
        assert ExportTraceServiceRequest.FromString(ours) == ExportTraceServiceRequest.FromString(expected)
    assert ours == expected


@pytest.mark.unit
def test_one_span_at_a_time_and_nothing_at_all() -> None:
    spans = spans_of_every_shape()
    for span in spans:
        assert encode_spans([span]) == sdk_encode_spans([span]).SerializePartialToString()
    assert encode_spans([]) == b""


@pytest.mark.unit
def test_an_attribute_that_cannot_be_encoded_is_left_out_not_the_batch() -> None:
    service, kept = provider({"service.name": "x"})
    span = service.get_tracer("t").start_span("s")
    span.set_attribute("fine", 1)
    span.end()
    readable = kept.spans[0]
    readable._attributes = {"fine": 1, "odd": object()}  # what the SDK's own validation would refuse
    decoded = ExportTraceServiceRequest.FromString(encode_spans([readable]))
    attributes = decoded.resource_spans[0].scope_spans[0].spans[0].attributes
    assert [a.key for a in attributes] == ["fine"]


@pytest.mark.unit
def test_the_exporter_refuses_a_batch_over_its_size_limit_without_sending_it(caplog) -> None:
    # Port 9 (discard) on loopback: nothing listens, so a request would fail, not hang.
    exporter = OtlpSpanExporter(endpoint="http://127.0.0.1:9/v1/traces", max_request_size=64)
    try:
        assert exporter.export(spans_of_every_shape()) == SpanExportResult.FAILURE
    finally:
        exporter.shutdown()
    assert "exceeds max_request_size 64" in caplog.text
    assert "Transient error" not in caplog.text  # no request was tried
