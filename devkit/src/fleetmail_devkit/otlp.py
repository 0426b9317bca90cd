"""An OTLP/HTTP receiver that keeps what the services export in memory: the tests' collector.

Services export traces (and metrics) with the OTLP/HTTP protobuf exporter, exactly as they
would to a real OpenTelemetry Collector; this receiver decodes the spans so a test can follow
one job's trace across processes, and keeps every request body so a test can prove no secret
left a process through telemetry.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


@dataclass(frozen=True)
class SpanRecord:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    kind: int
    attributes: dict[str, Any] = field(hash=False)
    # The (trace id, span id) of each span this one links to (a batch's messages).
    links: tuple[tuple[str, str], ...] = ()


def _value(any_value: Any) -> Any:
    which = any_value.WhichOneof("value")
    return getattr(any_value, which) if which else None


class OtlpSink:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, keep: bool = True) -> None:
        """`keep=False`: accept and count requests, decode and keep nothing (a benchmark's
        collector, which should cost the machine as little as possible)."""
        self.keep = keep
        self.received_bytes = 0
        self.spans: list[SpanRecord] = []
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                sink._receive(self.path, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-sink", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> OtlpSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _receive(self, path: str, body: bytes) -> None:
        with self._lock:
            self.received_bytes += len(body)
            if not self.keep:
                return
            self.bodies.append(body)
        if not path.endswith("/v1/traces"):
            return
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        records = []
        for resource_spans in request.resource_spans:
            service = next(
                (_value(a.value) for a in resource_spans.resource.attributes if a.key == "service.name"),
                "?",
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    records.append(
                        SpanRecord(
                            service=str(service),
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex() or None,
                            kind=span.kind,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
                        )
                    )
        with self._lock:
            self.spans.extend(records)

    def trace(self, trace_id: str) -> list[SpanRecord]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def find(self, predicate: Any) -> list[SpanRecord]:
        with self._lock:
            return [s for s in self.spans if predicate(s)]
