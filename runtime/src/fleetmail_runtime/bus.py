"""NATS JetStream through FastStream: the broker, the streams, buckets and stores.

Every service declares the streams it touches at start-up (idempotent), so the order in
which services start does not matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import TypeVar

from faststream.nats import JStream, NatsBroker, StorageType
from faststream.security import BaseSecurity, SASLPlaintext
from fleetmail_contracts import streams
from fleetmail_contracts.rpc import RPC_FAILURE_HEADER, RpcFailure
from nats.errors import Error as NatsError
from nats.js.api import RetentionPolicy, StreamConfig
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from .nats_fetch import consistent_fetch_timeouts
from .settings import CommonSettings
from .telemetry import Telemetry

log = logging.getLogger(__name__)
R = TypeVar("R", bound=BaseModel)


def jobs_stream(settings: CommonSettings) -> JStream:
    return JStream(
        streams.JOBS_STREAM,
        subjects=list(streams.JOBS_SUBJECTS),
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=settings.jobs_duplicate_window_s,
        num_replicas=settings.stream_replicas,
        max_bytes=settings.jobs_max_bytes,
        # mail-service's attachment sweep reads the queue in batches (a direct get: a work
        # queue allows no second consumer).
        allow_direct=True,
        declare=False,
    )


def events_stream(settings: CommonSettings) -> JStream:
    return JStream(
        streams.EVENTS_STREAM,
        subjects=list(streams.EVENTS_SUBJECTS),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=timedelta(days=settings.events_max_age_days).total_seconds(),
        duplicate_window=settings.jobs_duplicate_window_s,
        num_replicas=settings.stream_replicas,
        max_bytes=settings.events_max_bytes,
        declare=False,
    )


def dlq_stream(settings: CommonSettings) -> JStream:
    return JStream(
        streams.DLQ_STREAM,
        subjects=list(streams.DLQ_SUBJECTS),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=settings.stream_replicas,
        max_age=timedelta(days=settings.dead_letters_max_age_days).total_seconds(),
        allow_direct=True,  # read in batches by mail-service's attachment sweep
        declare=False,
    )


def inbox_prefix(service: str) -> str:
    """The prefix of the service's reply inboxes: `_INBOX_job_gateway`, … (not nats-py's shared
    `_INBOX`). Each service's NATS user may subscribe under its own prefix only
    (deploy/nats/accounts.conf), so no service reads the replies another one gets: access
    tokens, SMTP passwords and webhook secrets travel as replies."""
    return "_INBOX_" + service.replace("-", "_")


def own_reply_inboxes(broker: NatsBroker, service: str) -> None:
    """Give every JetStream pull subscriber the service's inbox prefix.

    The connection's `inbox_prefix` covers requests, JetStream API calls, KV watches and
    object-store reads; but FastStream (0.7.8) hands each pull subscriber nats-py's literal
    `_INBOX.` unless the subscriber is given another, and the server would refuse that
    subscription. Done here, once, before the broker starts its subscribers, so no service
    can forget it; tests/integration/test_nats_permissions.py sees a violation otherwise."""
    own = (inbox_prefix(service) + ".").encode()
    for subscriber in broker.subscribers:
        options: dict[str, object] | None = getattr(subscriber, "extra_options", None)
        if options is not None and "inbox_prefix" in options:
            options["inbox_prefix"] = own


def make_broker(settings: CommonSettings, service: str, telemetry: Telemetry | None = None) -> NatsBroker:
    # Telemetry off, no middleware: it would cost CPU on every message for nothing.
    consistent_fetch_timeouts()  # pull subscribers must not drop fetched messages (nats_fetch.py)
    tls = ssl.create_default_context(cafile=str(settings.nats_ca_file)) if settings.nats_ca_file else None
    security: BaseSecurity | None = None
    if settings.nats_user is not None:
        password = settings.nats_password.get_secret_value() if settings.nats_password else ""
        security = SASLPlaintext(settings.nats_user, password, ssl_context=tls)
    elif tls is not None:
        security = BaseSecurity(ssl_context=tls)
    return NatsBroker(
        settings.nats_url.split(","),
        name=f"fleetmail-{service}",
        inbox_prefix=inbox_prefix(service),
        security=security,
        middlewares=telemetry.broker_middlewares() if telemetry is not None else [],
        logger=logging.getLogger(f"{service}.bus"),
        log_level=logging.DEBUG,
        connect_timeout=5,
        max_reconnect_attempts=-1,
        graceful_timeout=10.0,
    )


KV_BUCKETS = (
    streams.TENANTS_BUCKET,
    streams.DELIVERY_LEDGER_BUCKET,
    streams.PARKED_JOBS_BUCKET,
    streams.MAILBOX_LIMITS_BUCKET,
)
ALL_BUCKETS = (*KV_BUCKETS, streams.ATTACHMENTS_BUCKET)


async def declare_streams(
    broker: NatsBroker, settings: CommonSettings, uses: tuple[str, ...] = ALL_BUCKETS
) -> None:
    """Create or update fleetmail's streams, KV buckets and object store; or, where a
    provisioner did that (`declare_streams: false`), only look up the buckets this service
    `uses` (its NATS user may read no others). Retried while a JetStream cluster elects its
    leaders, which takes a few seconds after the nodes start."""
    deadline = time.monotonic() + settings.declare_timeout_s
    while True:
        try:
            if settings.declare_streams:
                await _declare(broker, settings)
            else:
                await _look_up(broker, settings, uses)
            return
        except (NatsError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise
            log.info("JetStream is not ready yet (%s); trying again", exc)
            await asyncio.sleep(0.5)


async def _look_up(broker: NatsBroker, settings: CommonSettings, uses: tuple[str, ...]) -> None:
    """Fill FastStream's bucket cache without declaring: later calls find them there."""
    for bucket in uses:
        if bucket == streams.ATTACHMENTS_BUCKET:
            await broker.object_storage(bucket, declare=False)
            await _report_attachment_limits(broker, settings)
        else:
            await broker.key_value(bucket, declare=False)


ATTACHMENTS_STREAM = f"OBJ_{streams.ATTACHMENTS_BUCKET}"
"""The stream behind the attachments object store (nats-py's naming)."""


def attachment_limits(settings: CommonSettings) -> dict[str, float]:
    """The attachments store's safety nets, as the stream's `max_bytes` and `max_age` (s)."""
    return {
        "max_bytes": settings.attachments_max_bytes,
        "max_age": timedelta(days=settings.attachments_max_age_days).total_seconds(),
    }


def _limit_differences(config: StreamConfig, wanted: dict[str, float]) -> list[str]:
    found = {"max_bytes": config.max_bytes or -1, "max_age": config.max_age or 0}
    return [
        f"{name} is {found[name]:g}, the settings say {value:g}"
        for name, value in wanted.items()
        if abs(found[name] - value) > 0.5
    ]


async def _declare_attachments(broker: NatsBroker, settings: CommonSettings) -> None:
    """The object store with its size and age limits; a store made without them (or with
    others) is updated in place, its objects kept."""
    wanted = attachment_limits(settings)
    js = broker.connection.jetstream()
    try:
        await js.create_object_store(
            streams.ATTACHMENTS_BUCKET,
            ttl=wanted["max_age"],
            max_bytes=int(wanted["max_bytes"]),
            replicas=settings.stream_replicas,
        )
    except BadRequestError:  # it exists with another configuration
        config = (await js.stream_info(ATTACHMENTS_STREAM)).config
        if differences := _limit_differences(config, wanted):
            log.info("updating the attachments store's limits: %s", "; ".join(differences))
        await js.update_stream(
            config=dataclasses.replace(config, max_bytes=int(wanted["max_bytes"]), max_age=wanted["max_age"])
        )
    await broker.object_storage(streams.ATTACHMENTS_BUCKET, declare=False)


async def _report_attachment_limits(broker: NatsBroker, settings: CommonSettings) -> None:
    """Where a provisioner declares the store, say at start when it differs from the settings."""
    with contextlib.suppress(NatsError):  # a user that may not read stream info: nothing to say
        config = (await broker.connection.jetstream().stream_info(ATTACHMENTS_STREAM)).config
        differences = _limit_differences(config, attachment_limits(settings))
        if differences:
            log.warning(
                "the attachments store's limits differ from the settings (%s): run the provisioner "
                "(python -m fleetmail_runtime.provision) to apply them",
                "; ".join(differences),
            )


async def _declare(broker: NatsBroker, settings: CommonSettings) -> None:
    js = broker.connection.jetstream()
    for stream in (jobs_stream(settings), events_stream(settings), dlq_stream(settings)):
        # JStream keeps its subjects apart from its config until FastStream declares it.
        config: StreamConfig = dataclasses.replace(stream.config, subjects=list(stream.subjects))
        try:
            await js.add_stream(config=config)
        except BadRequestError:
            await js.update_stream(config=config)
    replicas = settings.stream_replicas
    await broker.key_value(streams.TENANTS_BUCKET, history=5, replicas=replicas)
    await broker.key_value(
        streams.DELIVERY_LEDGER_BUCKET, ttl=timedelta(days=7).total_seconds(), replicas=replicas
    )
    await broker.key_value(streams.PARKED_JOBS_BUCKET, replicas=replicas)
    # A mailbox that sent nothing for two days has nothing left to remember.
    await broker.key_value(
        streams.MAILBOX_LIMITS_BUCKET, ttl=timedelta(days=2).total_seconds(), replicas=replicas
    )
    await _declare_attachments(broker, settings)


class BusUnavailable(Exception):
    """NATS could not do what was asked just now (no connection, no responder, a timeout).

    Always transient: the caller retries, or tells its own caller to (HTTP 503, SMTP 451, a
    NAK). The one translation of nats-py's errors and timeouts, so no service catches them.
    """

    def __init__(self, what: str, cause: BaseException) -> None:
        super().__init__(f"{what}: {type(cause).__name__}")
        self.what = what
        self.timed_out = isinstance(cause, TimeoutError)
        """No answer in time: the request may have been done all the same (a publish stored
        by JetStream whose acknowledgement was lost), unlike a refusal or no connection."""


class RequestFailed(BusUnavailable):
    """The service asked answered that it could not carry the request out (an `RpcFailure`):
    `reason` says why, for an administrator, and `transient` whether trying again may help.
    A caller that does not look closer treats it as any `BusUnavailable`."""

    def __init__(self, subject: str, failure: RpcFailure) -> None:
        Exception.__init__(self, f"{subject}: {failure.reason}")
        self.what = subject
        self.timed_out = False
        self.reason = failure.reason
        self.transient = failure.kind == "transient"


@contextlib.contextmanager
def bus_errors(what: str) -> Iterator[None]:
    """Inside the block, a NATS error or a timeout becomes `BusUnavailable(what)`."""
    try:
        yield
    except (NatsError, TimeoutError) as exc:
        raise BusUnavailable(what, exc) from exc


class Bus:
    """Typed request/reply and publishing over the broker, NATS errors as `BusUnavailable`."""

    def __init__(self, broker: NatsBroker, *, timeout_s: float = 10.0) -> None:
        self.broker = broker
        self.timeout_s = timeout_s

    async def request(
        self, message: BaseModel, subject: str, reply: type[R], *, timeout_s: float | None = None
    ) -> R:
        """Ask whoever serves `subject`; their answer parsed as `reply`."""
        with bus_errors(f"no answer on {subject}"):
            response = await self.broker.request(message, subject, timeout=timeout_s or self.timeout_s)
        if (response.headers or {}).get(RPC_FAILURE_HEADER) is not None:
            raise RequestFailed(subject, RpcFailure.model_validate_json(response.body))
        return reply.model_validate_json(response.body)

    async def publish(
        self,
        message: BaseModel,
        subject: str,
        *,
        stream: str,
        msg_id: str | None = None,
        timeout_s: float | None = None,
    ) -> bool:
        """Publish to a stream and wait for its acknowledgement; True when JetStream dropped the
        message as a duplicate of `msg_id` within its window."""
        headers = {"Nats-Msg-Id": msg_id} if msg_id is not None else None
        with bus_errors(f"{stream} did not take the message"):
            ack = await self.broker.publish(
                message, subject, headers=headers, stream=stream, timeout=timeout_s or self.timeout_s
            )
        return bool(getattr(ack, "duplicate", False))


class DeclaredBucket:
    """A KV bucket the runtime declared with the streams, looked up once by the `open` start
    hook (no round trip per use); `kv` before `open` is a programming error."""

    def __init__(self, broker: NatsBroker, bucket: str) -> None:
        self.broker = broker
        self.bucket = bucket
        self._kv: KeyValue | None = None

    async def open(self) -> None:
        with bus_errors(f"the {self.bucket} bucket cannot be opened"):
            self._kv = await self.broker.key_value(self.bucket, declare=False)

    @property
    def kv(self) -> KeyValue:
        if self._kv is None:
            raise RuntimeError(f"{type(self).__name__}.open() was not awaited (it is a start hook)")
        return self._kv
