"""job-gateway: the HTTP API for devices and administrators, and the job status projection.

Wiring only: request parsing, authentication, and relaying to the bus; decisions about
delivery and tokens are made by mail-service and token-service.
"""

import hmac
import html
import ipaddress
import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Self

from fastapi import Depends, FastAPI, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer
from faststream import AckPolicy
from faststream.nats import ConsumerConfig, PullSub
from fleetmail_contracts import streams
from fleetmail_contracts.alerts import (
    ALERT_ACKNOWLEDGE_SUBJECT,
    ALERT_LIST_SUBJECT,
    AcknowledgeAlert,
    AlertList,
    AlertView,
    ListAlerts,
)
from fleetmail_contracts.credentials import (
    SET_CREDENTIALS_SUBJECT,
    VIEW_CREDENTIALS_SUBJECT,
    CredentialField,
    CredentialsView,
    SetCredentials,
    ViewCredentials,
)
from fleetmail_contracts.devices import (
    AutoResetTriggered,
    DeviceEventBase,
    UserLoggedOut,
    device_event_subject,
)
from fleetmail_contracts.jobs import JobFunction
from fleetmail_contracts.mail_events import MAIL_EVENTS_WILDCARD
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import (
    ACQUISITION_STATUS_SUBJECT,
    COMPLETE_AUTHORIZATION_SUBJECT,
    DELETE_GRANT_SUBJECT,
    GRANT_STATUS_SUBJECT,
    START_ACQUISITION_SUBJECT,
    AcquisitionFlow,
    AcquisitionStarted,
    AcquisitionState,
    AcquisitionStatus,
    AcquisitionStatusRequest,
    CompleteAuthorization,
    DeleteGrant,
    DeleteGrantReply,
    GrantStatusReply,
    GrantStatusRequest,
    Principal,
    PrincipalKind,
    Provider,
    StartAcquisition,
)
from fleetmail_runtime.bus import declare_streams, events_stream, make_broker
from fleetmail_runtime.mongo import connect_mongo
from fleetmail_runtime.telemetry import configure_telemetry, gauges_polled
from fleetmail_runtime.tenants import TenantDirectory
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError
from opentelemetry.trace import NoOpTracerProvider
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from .admins import Administrator, Role, new_api_key, refusal, split_api_key
from .auth import device_secret_hash, load_or_create_secret, new_device_secret, secret_matches
from .deadletters import DeadLetters, DeadLetterView
from .devices import DeviceDirectory
from .intake import Device, JobAccepted, JobIntake, JobSubmission, summarise
from .problems import Problem, handle_problem
from .settings import GatewaySettings
from .smtp_listener import start_listener
from .store import GatewayStore
from .telemetry import HttpTelemetry

SERVICE = "job-gateway"
STATUS_DURABLE = streams.GATEWAY_STATUS_CONSUMER[1]
log = logging.getLogger(SERVICE)
_UNSAFE = re.compile(r"[\r\n\x00]")


class UserSignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=3, max_length=320, description="The login user's e-mail address")
    flow: AcquisitionFlow | None = None


class DeviceReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["user_logged_out", "auto_reset"]
    user: str | None = Field(default=None, min_length=3, max_length=320)


def _network(cidr: str) -> str:
    return str(ipaddress.ip_network(cidr, strict=False))


Cidr = Annotated[str, AfterValidator(_network)]
"""A source-address range, normalised (192.0.2.15 → 192.0.2.15/32); invalid ones are refused."""


class DeviceRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = Field(default="", max_length=200)
    allow_cidrs: list[Cidr] = Field(
        default=[],
        max_length=16,
        description="Source addresses (CIDR) from which the device may send over SMTP without AUTH "
        "(devices that cannot AUTH, or send HELO instead of EHLO)",
    )
    smtp_function: JobFunction = Field(
        default=JobFunction.SCAN_TO_EMAIL, description="What a message received over SMTP becomes"
    )


class CredentialsInput(BaseModel):
    """A tenant's secrets, write-only: given fields replace what is stored, `clear` removes."""

    model_config = ConfigDict(extra="forbid")
    microsoft_client_secret: str | None = Field(default=None, repr=False, max_length=1024)
    google_service_account: dict[str, Any] | None = Field(
        default=None,
        repr=False,
        description="The service account's JSON key file, as Google Cloud exports it",
    )
    smtp_username: str | None = Field(default=None, max_length=320)
    smtp_password: str | None = Field(default=None, repr=False, max_length=1024)
    webhook_secret: str | None = Field(default=None, repr=False, min_length=16, max_length=1024)
    clear: tuple[CredentialField, ...] = ()


class DeviceChange(BaseModel):
    """What an administrator changes on a device; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    disabled: bool | None = None
    machine_address: str | None = Field(
        default=None,
        max_length=320,
        description="The machine's address for Internet Fax; must be the tenant's administrator address",
    )
    allow_cidrs: list[Cidr] | None = Field(default=None, max_length=16)
    smtp_function: JobFunction | None = None


class DeviceView(BaseModel):
    device_id: str
    tenant_id: str
    name: str = ""
    disabled: bool = False
    machine_address: str | None = None
    allow_cidrs: list[str] = []
    smtp_function: str | None = None
    created_at: datetime | None = None


class ApiKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    role: Literal["fleet_admin", "operator"]
    tenant_ids: list[str] | None = Field(
        default=None, description="The tenants the key may reach; none: every tenant (operators only)"
    )


class ApiKeyView(BaseModel):
    key_id: str
    name: str
    role: str
    tenant_ids: list[str] | None = None
    created_at: datetime
    key: str | None = Field(default=None, description="Shown once, when the key is created")


class DeviceCredentials(BaseModel):
    device_id: str
    tenant_id: str
    secret: str = Field(description="Shown once; fleetmail stores only a keyed hash")


class JobStatus(BaseModel):
    job_id: str
    tenant_id: str
    device_id: str
    function: JobFunction
    status: str
    submitted_at: datetime
    updated_at: datetime | None = None
    detail: str | None = None
    reason_code: str | None = None
    remedy: str | None = None
    smtp_reply: str | None = None
    message_id: str | None = None
    sender: str | None = None

    @classmethod
    def of(cls, document: dict[str, Any]) -> Self:
        """The status record job-gateway keeps for a job, as the API shows it."""
        return cls(
            job_id=document["_id"],
            **{k: v for k, v in document.items() if k in cls.model_fields and k != "job_id"},
        )


@dataclass
class Runtime:
    store: GatewayStore
    tenants: TenantDirectory
    device_key: bytes
    admin_key: str
    intake: JobIntake
    devices: DeviceDirectory


def _status_update(event: dict[str, Any]) -> tuple[str, str, datetime, dict[str, Any]]:
    """What a mail event changes in the job's status record."""
    fields: dict[str, Any] = {}
    for key in ("detail", "remedy", "smtp_reply", "message_id", "reason_code", "sender"):
        if event.get(key) is not None:
            fields[key] = event[key]
    if event.get("reason") and "detail" not in fields:
        fields["detail"] = event["reason"]
    return event["job_id"], event["kind"], datetime.fromisoformat(event["occurred_at"]), fields


class JobSummary(BaseModel):
    since: datetime
    counts: dict[str, int]


class QueueView(BaseModel):
    stream: str
    consumer: str
    pending: int
    unacknowledged: int
    redelivered: int


def build_app(settings: GatewaySettings) -> FastAPI:
    telemetry = configure_telemetry(SERVICE, settings.common)
    broker = make_broker(settings.common, SERVICE, telemetry)
    holder: dict[str, Runtime] = {}

    def runtime() -> Runtime:
        return holder["runtime"]

    @broker.subscriber(
        MAIL_EVENTS_WILDCARD,
        stream=events_stream(settings.common),
        durable=STATUS_DURABLE,
        # A batch of events becomes one bulk write: the projection keeps up with delivery
        # without taking the embedded database's write rate away from everything else.
        pull_sub=PullSub(batch_size=256, timeout=0.2, batch=True),
        config=ConsumerConfig(max_deliver=10, ack_wait=30),
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_mail_events(events: list[dict[str, Any]]) -> None:
        await runtime().store.update_job_statuses([_status_update(event) for event in events])

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        mongo = connect_mongo(settings.common, SERVICE)
        store = GatewayStore(mongo, settings.database)
        await store.ensure_indexes()
        data_dir = settings.common.data_dir
        device_key = (
            settings.device_secret_key.get_secret_value()
            if settings.device_secret_key
            else load_or_create_secret(data_dir / "device-secret-key")
        )
        admin_key = (
            settings.admin_api_key.get_secret_value()
            if settings.admin_api_key
            else load_or_create_secret(data_dir / "admin-api-key")
        )
        await broker.connect()
        await declare_streams(
            broker, settings.common, uses=(streams.TENANTS_BUCKET, streams.ATTACHMENTS_BUCKET)
        )
        tenants = TenantDirectory(broker)
        await tenants.start()
        # The KV bucket is a projection of the tenants collection: make it complete at start.
        for tenant in await store.all_tenants():
            await tenants.put(tenant)

        def provider_of(tenant_id: str) -> str:
            cached = tenants.cached(tenant_id)
            return cached.provider.value if cached is not None else "unknown"

        intake = JobIntake(broker, store, settings, provider_of)
        devices = DeviceDirectory(store, device_key.encode())
        holder["runtime"] = Runtime(store, tenants, device_key.encode(), admin_key, intake, devices)
        await broker.start()
        listener = await start_listener(settings, intake, devices)
        log.info("job-gateway ready on http://%s:%d", settings.host, settings.port)
        try:
            async with gauges_polled(telemetry, broker, [streams.GATEWAY_STATUS_CONSUMER]):
                yield
        finally:
            await listener.close()
            await broker.stop()
            await tenants.stop()
            await mongo.close()
            telemetry.shutdown()

    app = FastAPI(
        title="fleetmail job-gateway",
        version="0.1.0",
        description="OAuth 2.0 e-mail for device fleets: jobs from devices, settings and tokens for administrators.",
        lifespan=lifespan,
        # FastAPI's own telemetry stays off: it records query strings (the OAuth callback's
        # carries an authorization code) and costs more than HttpTelemetry, added below.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.add_exception_handler(Problem, handle_problem)
    basic = HTTPBasic(auto_error=False)
    bearer = HTTPBearer(auto_error=False)

    async def device_auth(credentials: Annotated[HTTPBasicCredentials | None, Depends(basic)]) -> Device:
        unauthorized = Problem(
            401,
            "unauthorized",
            "Device authentication failed",
            "send the device id and secret with HTTP Basic authentication",
            {"WWW-Authenticate": 'Basic realm="fleetmail devices"'},
        )
        if credentials is None:
            raise unauthorized
        login = await runtime().devices.by_credentials(credentials.username, credentials.password)
        if login is None:
            raise unauthorized
        return login.device

    async def admin_auth(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Administrator:
        """The key's administrator, if the key is good and its role allows this request."""
        unauthorized = Problem(
            401,
            "unauthorized",
            "Administrator authentication failed",
            "send an administrator API key as a bearer token",
            {"WWW-Authenticate": 'Bearer realm="fleetmail admin"'},
        )
        if credentials is None:
            raise unauthorized
        rt = runtime()
        admin: Administrator | None = None
        if hmac.compare_digest(credentials.credentials, rt.admin_key):
            admin = Administrator("owner", Role.OWNER, None)
        elif (parts := split_api_key(credentials.credentials)) is not None:
            document = await rt.store.api_key(parts[0])
            if document is not None and secret_matches(rt.device_key, parts[1], document["secret_hash"]):
                tenants = document.get("tenant_ids")
                admin = Administrator(
                    document["_id"], Role(document["role"]), tuple(tenants) if tenants else None
                )
        if admin is None:
            raise unauthorized
        why = refusal(
            admin,
            request.method,
            request.path_params.get("tenant_id"),
            request.url.path.startswith("/v1/admin/api-keys"),
        )
        if why is not None:
            raise Problem(403, "forbidden", "Not allowed for this key", why)
        return admin

    async def tenant_or_404(tenant_id: str) -> TenantSettings:
        tenant = await runtime().store.tenant(tenant_id)
        if tenant is None:
            raise Problem(404, "tenant-not-found", "Unknown tenant", f"no tenant {tenant_id!r}")
        return tenant

    async def rpc(message: BaseModel, subject: str, service: str) -> bytes:
        try:
            response = await broker.request(message, subject, timeout=settings.token_rpc_timeout_s)
        except (NatsError, TimeoutError) as exc:
            raise Problem(
                503,
                f"{service}-unavailable",
                f"{service} unavailable",
                f"{service} did not answer ({type(exc).__name__}); try again",
                {"Retry-After": "5"},
            ) from exc
        return response.body  # type: ignore[no-any-return]

    async def token_rpc(message: BaseModel, subject: str) -> bytes:
        return await rpc(message, subject, "token-service")

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        ready = "runtime" in holder and broker.connection is not None and broker.connection.is_connected
        smtp_tls = settings.smtp_min_tls if settings.smtp_tls_cert else None
        return JSONResponse({"ready": ready, "smtp_min_tls": smtp_tls}, status_code=200 if ready else 503)

    # --- administrators ---------------------------------------------------------------

    @app.put("/v1/admin/tenants/{tenant_id}", tags=["admin"], dependencies=[Depends(admin_auth)])
    async def put_tenant(tenant_id: str, settings_in: TenantSettings) -> TenantSettings:
        if settings_in.tenant_id != tenant_id:
            raise Problem(
                422, "tenant-id-mismatch", "Tenant id mismatch", "the body's tenant_id must match the URL"
            )
        existing = await runtime().store.tenant(tenant_id)
        revision = (existing.revision if existing else 0) + 1
        tenant = settings_in.model_copy(update={"revision": revision})
        await runtime().store.save_tenant(tenant)
        await runtime().tenants.put(tenant)
        return tenant

    @app.get("/v1/admin/tenants", tags=["admin"])
    async def list_tenants(admin: Annotated[Administrator, Depends(admin_auth)]) -> list[TenantSettings]:
        """Every tenant this key may see."""
        found = await runtime().store.all_tenants()
        if admin.tenant_ids is not None:
            found = [t for t in found if t.tenant_id in admin.tenant_ids]
        return sorted(found, key=lambda t: t.tenant_id)

    @app.get("/v1/admin/tenants/{tenant_id}", tags=["admin"], dependencies=[Depends(admin_auth)])
    async def get_tenant(tenant_id: str) -> TenantSettings:
        return await tenant_or_404(tenant_id)

    @app.put("/v1/admin/tenants/{tenant_id}/credentials", tags=["admin"], dependencies=[Depends(admin_auth)])
    async def put_credentials(tenant_id: str, credentials_in: CredentialsInput) -> CredentialsView:
        """Provider app credentials (app-only sending) and the SMTP password (OAuth 2.0 off),
        stored encrypted by token-service. The answer says what is set, never the secrets."""
        await tenant_or_404(tenant_id)
        request = SetCredentials(tenant_id=tenant_id, **credentials_in.model_dump())
        view = CredentialsView.model_validate_json(await token_rpc(request, SET_CREDENTIALS_SUBJECT))
        if view.error:
            raise Problem(422, "credentials-invalid", "Credentials refused", view.error)
        return view

    @app.get("/v1/admin/tenants/{tenant_id}/credentials", tags=["admin"], dependencies=[Depends(admin_auth)])
    async def get_credentials(tenant_id: str) -> CredentialsView:
        await tenant_or_404(tenant_id)
        request = ViewCredentials(tenant_id=tenant_id)
        return CredentialsView.model_validate_json(await token_rpc(request, VIEW_CREDENTIALS_SUBJECT))

    @app.post(
        "/v1/admin/tenants/{tenant_id}/devices",
        tags=["admin"],
        status_code=201,
        dependencies=[Depends(admin_auth)],
    )
    async def register_device(tenant_id: str, registration: DeviceRegistration) -> DeviceCredentials:
        await tenant_or_404(tenant_id)
        rt = runtime()
        existing = await rt.store.device(registration.device_id)
        if existing is not None and existing["tenant_id"] != tenant_id:
            raise Problem(
                409, "device-id-taken", "Device id taken", "that device id belongs to another tenant"
            )
        secret = new_device_secret()
        await rt.store.save_device(
            tenant_id,
            registration.device_id,
            registration.name,
            device_secret_hash(rt.device_key, secret),
            datetime.now(UTC),
            registration.allow_cidrs,
            registration.smtp_function.value,
        )
        return DeviceCredentials(device_id=registration.device_id, tenant_id=tenant_id, secret=secret)

    @app.post("/v1/admin/api-keys", tags=["admin"], status_code=201, dependencies=[Depends(admin_auth)])
    async def create_api_key(request_in: ApiKeyRequest) -> ApiKeyView:
        """A key for a fleet administrator (read and change its tenants) or an operator (read)."""
        if request_in.role == "fleet_admin" and not request_in.tenant_ids:
            raise Problem(422, "tenants-required", "Tenants required", "a fleet_admin key names its tenants")
        key_id, secret, key = new_api_key()
        document = {
            "_id": key_id,
            "name": request_in.name,
            "role": request_in.role,
            "tenant_ids": request_in.tenant_ids,
            "secret_hash": device_secret_hash(runtime().device_key, secret),
            "created_at": datetime.now(UTC),
        }
        await runtime().store.save_api_key(document)
        return ApiKeyView(
            key_id=key_id, key=key, **{k: document[k] for k in ("name", "role", "tenant_ids", "created_at")}
        )

    @app.get("/v1/admin/api-keys", tags=["admin"], dependencies=[Depends(admin_auth)])
    async def list_api_keys() -> list[ApiKeyView]:
        return [
            ApiKeyView(key_id=d["_id"], **{k: d.get(k) for k in ("name", "role", "tenant_ids", "created_at")})
            for d in await runtime().store.list_api_keys()
        ]

    @app.delete("/v1/admin/api-keys/{key_id}", tags=["admin"], dependencies=[Depends(admin_auth)])
    async def delete_api_key(key_id: str) -> dict[str, bool]:
        return {"deleted": await runtime().store.delete_api_key(key_id)}

    async def device_of_tenant(tenant_id: str, device_id: str) -> dict[str, Any]:
        document = await runtime().store.device(device_id)
        if document is None or document["tenant_id"] != tenant_id:
            raise Problem(
                404, "device-not-found", "Unknown device", f"no device {device_id!r} in {tenant_id!r}"
            )
        return document

    def device_view(document: dict[str, Any]) -> DeviceView:
        return DeviceView(
            device_id=document["_id"],
            **{
                k: document[k]
                for k in DeviceView.model_fields
                if k in document and k != "device_id" and document[k] is not None
            },
        )

    @app.get("/v1/admin/tenants/{tenant_id}/devices", tags=["admin"], dependencies=[Depends(admin_auth)])
    async def list_devices(tenant_id: str) -> list[DeviceView]:
        await tenant_or_404(tenant_id)
        return [device_view(d) for d in await runtime().store.list_devices(tenant_id)]

    @app.patch(
        "/v1/admin/tenants/{tenant_id}/devices/{device_id}",
        tags=["admin"],
        dependencies=[Depends(admin_auth)],
    )
    async def change_device(tenant_id: str, device_id: str, change: DeviceChange) -> DeviceView:
        """Disable or enable a device, set its Internet Fax machine address, its SMTP allowlist."""
        tenant = await tenant_or_404(tenant_id)
        await device_of_tenant(tenant_id, device_id)
        changes = change.model_dump(exclude_none=True)
        if change.smtp_function is not None:
            changes["smtp_function"] = change.smtp_function.value
        if change.machine_address is not None:
            admin_address = tenant.administrator_address
            if admin_address is None or change.machine_address.casefold() != admin_address.casefold():
                raise Problem(
                    422,
                    "machine-address-not-administrator",
                    "Machine address refused",
                    "Internet Fax is sent as the machine's address, which must be the tenant's administrator "
                    f"address ({admin_address or 'none set'}): only that mailbox's grant can send it",
                )
        document = await runtime().store.update_device(device_id, changes)
        assert document is not None
        return device_view(document)

    @app.post(
        "/v1/admin/tenants/{tenant_id}/devices/{device_id}/secret",
        tags=["admin"],
        dependencies=[Depends(admin_auth)],
    )
    async def rotate_device_secret(tenant_id: str, device_id: str) -> DeviceCredentials:
        """A new secret for the device; the old one stops working at once."""
        await device_of_tenant(tenant_id, device_id)
        secret = new_device_secret()
        await runtime().store.update_device(
            device_id, {"secret_hash": device_secret_hash(runtime().device_key, secret)}
        )
        return DeviceCredentials(device_id=device_id, tenant_id=tenant_id, secret=secret)

    @app.get("/v1/admin/tenants/{tenant_id}/jobs", tags=["admin"], dependencies=[Depends(admin_auth)])
    async def search_jobs(
        tenant_id: str,
        status: str | None = None,
        device_id: str | None = None,
        function: JobFunction | None = None,
        before: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[JobStatus]:
        """The tenant's jobs, newest first; pass the last one's `submitted_at` as `before` for more."""
        await tenant_or_404(tenant_id)
        found = await runtime().store.search_jobs(
            tenant_id, status, device_id, function.value if function else None, before, limit
        )
        return [JobStatus.of(d) for d in found]

    @app.get("/v1/admin/tenants/{tenant_id}/jobs/summary", tags=["admin"], dependencies=[Depends(admin_auth)])
    async def job_summary(
        tenant_id: str, hours: Annotated[float, Query(gt=0, le=24 * 90)] = 24
    ) -> JobSummary:
        """How many of the tenant's jobs of the last `hours` are in each status."""
        await tenant_or_404(tenant_id)
        since = datetime.now(UTC) - timedelta(hours=hours)
        return JobSummary(since=since, counts=await runtime().store.job_counts(tenant_id, since))

    @app.get("/v1/admin/queues", tags=["admin"], dependencies=[Depends(admin_auth)])
    async def queues() -> list[QueueView]:
        """Each durable consumer's lag: messages waiting, delivered but unacknowledged, redelivered."""
        js = broker.connection.jetstream()
        views = []
        for stream, consumer in streams.DURABLE_CONSUMERS:
            try:
                info = await js.consumer_info(stream, consumer)
            except NotFoundError:
                continue  # its service has not started yet
            except (NatsError, TimeoutError) as exc:
                raise Problem(
                    503, "bus-unavailable", "Queues unavailable", "try again", {"Retry-After": "5"}
                ) from exc
            views.append(
                QueueView(
                    stream=stream,
                    consumer=consumer,
                    pending=info.num_pending or 0,
                    unacknowledged=info.num_ack_pending or 0,
                    redelivered=info.num_redelivered or 0,
                )
            )
        return views

    @app.get("/v1/admin/tenants/{tenant_id}/dead-letters", tags=["admin"], dependencies=[Depends(admin_auth)])
    async def list_dead_letters(
        tenant_id: str, limit: Annotated[int, Query(ge=1, le=500)] = 50
    ) -> list[DeadLetterView]:
        """Jobs that failed for good or ran out of retries, newest first, with the reason."""
        await tenant_or_404(tenant_id)
        try:
            return await DeadLetters(broker).list(tenant_id, limit)
        except (NatsError, TimeoutError) as exc:
            raise Problem(
                503, "bus-unavailable", "Dead letters unavailable", "try again", {"Retry-After": "5"}
            ) from exc

    @app.post(
        "/v1/admin/tenants/{tenant_id}/dead-letters/{sequence}/resend",
        tags=["admin"],
        status_code=202,
        dependencies=[Depends(admin_auth)],
    )
    async def resend_dead_letter(tenant_id: str, sequence: Annotated[int, Path(ge=1)]) -> JobAccepted:
        """Send a dead job again (after fixing its cause: a grant, a setting, a mailbox)."""
        await tenant_or_404(tenant_id)
        try:
            job_id = await DeadLetters(broker).resend(tenant_id, sequence)
        except (NatsError, TimeoutError) as exc:
            raise Problem(
                503, "bus-unavailable", "Job queue unavailable", "try again", {"Retry-After": "5"}
            ) from exc
        if job_id is None:
            raise Problem(
                404,
                "dead-letter-not-found",
                "Unknown dead letter",
                f"no dead job {sequence} in {tenant_id!r}",
            )
        await runtime().store.requeue_job(job_id, datetime.now(UTC))
        return JobAccepted(job_id=job_id, status="queued")

    @app.get("/v1/admin/tenants/{tenant_id}/alerts", tags=["admin"], dependencies=[Depends(admin_auth)])
    async def list_alerts(tenant_id: str, include_resolved: bool = False) -> list[AlertView]:
        """The tenant's alerts for administrators (dead or expiring grants, SMTP AUTH off, …)."""
        await tenant_or_404(tenant_id)
        request = ListAlerts(tenant_id=tenant_id, include_resolved=include_resolved)
        found = AlertList.model_validate_json(await rpc(request, ALERT_LIST_SUBJECT, "notifier")).alerts
        return [a for a in found if a.for_administrators]

    @app.post(
        "/v1/admin/tenants/{tenant_id}/alerts/{alert_id}/acknowledge",
        tags=["admin"],
        dependencies=[Depends(admin_auth)],
    )
    async def acknowledge_alert(
        tenant_id: str, alert_id: str, admin: Annotated[Administrator, Depends(admin_auth)]
    ) -> AlertView:
        request = AcknowledgeAlert(tenant_id=tenant_id, alert_id=alert_id, by=admin.key_id)
        found = AlertList.model_validate_json(
            await rpc(request, ALERT_ACKNOWLEDGE_SUBJECT, "notifier")
        ).alerts
        if not found:
            raise Problem(404, "alert-not-found", "No such open alert", f"no open alert {alert_id!r}")
        return found[0]

    @app.post(
        "/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire",
        tags=["admin"],
        dependencies=[Depends(admin_auth)],
    )
    async def acquire_administrator(
        tenant_id: str, flow: AcquisitionFlow | None = None
    ) -> AcquisitionStarted:
        """Start the administrator's sign-in: a device code (Microsoft's default) or a browser
        sign-in (`flow=authorization_code`, the only one Google allows for Gmail)."""
        tenant = await tenant_or_404(tenant_id)
        if tenant.administrator_address is None:
            raise Problem(
                409,
                "no-administrator-address",
                "No administrator address",
                "set the tenant's administrator e-mail address first",
            )
        if flow is None and tenant.identity.app_only:
            flow = AcquisitionFlow.APP_ONLY
        elif flow is None:
            google = tenant.provider is Provider.GOOGLE
            flow = AcquisitionFlow.AUTHORIZATION_CODE if google else AcquisitionFlow.DEVICE_CODE
        request = StartAcquisition(
            principal=Principal(
                tenant_id=tenant_id, kind=PrincipalKind.ADMINISTRATOR, address=tenant.administrator_address
            ),
            flow=flow,
            redirect_uri=f"{settings.public_url.rstrip('/')}/oauth/callback",
        )
        started = AcquisitionStarted.model_validate_json(await token_rpc(request, START_ACQUISITION_SUBJECT))
        if started.error:
            raise Problem(409, "acquisition-refused", "Token acquisition refused", started.error)
        return started

    @app.get(
        "/v1/admin/tenants/{tenant_id}/acquisitions/{acquisition_id}",
        tags=["admin"],
        dependencies=[Depends(admin_auth)],
    )
    async def acquisition_status(tenant_id: str, acquisition_id: str) -> AcquisitionStatus:
        request = AcquisitionStatusRequest(acquisition_id=acquisition_id, tenant_id=tenant_id)
        return AcquisitionStatus.model_validate_json(await token_rpc(request, ACQUISITION_STATUS_SUBJECT))

    @app.get("/v1/admin/tenants/{tenant_id}/tokens", tags=["admin"], dependencies=[Depends(admin_auth)])
    async def token_status(tenant_id: str) -> GrantStatusReply:
        await tenant_or_404(tenant_id)
        return GrantStatusReply.model_validate_json(
            await token_rpc(GrantStatusRequest(tenant_id=tenant_id), GRANT_STATUS_SUBJECT)
        )

    @app.delete(
        "/v1/admin/tenants/{tenant_id}/tokens/users/{address}",
        tags=["admin"],
        dependencies=[Depends(admin_auth)],
    )
    async def delete_user_token(tenant_id: str, address: str) -> DeleteGrantReply:
        """The [Delete] of Refresh Tokens (User): the user signs in again next time."""
        await tenant_or_404(tenant_id)
        principal = _principal(tenant_id, PrincipalKind.USER, address)
        request = DeleteGrant(principal=principal, reason="requested")
        return DeleteGrantReply.model_validate_json(await token_rpc(request, DELETE_GRANT_SUBJECT))

    # --- the OAuth redirect ------------------------------------------------------------

    async def oauth_callback(request: Request) -> HTMLResponse:
        values = dict(request.query_params)
        if request.method == "POST":
            form = await request.form()
            values.update({k: str(v) for k, v in form.items()})
        if "state" not in values:
            return _page(400, "Sign-in failed", "This page is only reached from a sign-in.")
        try:
            answer = CompleteAuthorization(
                state=values["state"][:512],
                code=values.get("code"),
                error=values.get("error"),
                error_description=values.get("error_description"),
            )
        except ValidationError:
            return _page(400, "Sign-in failed", "The sign-in answer could not be read.")
        try:
            status = AcquisitionStatus.model_validate_json(
                await token_rpc(answer, COMPLETE_AUTHORIZATION_SUBJECT)
            )
        except Problem:
            return _page(503, "Please try again", "fleetmail could not finish the sign-in just now.")
        if status.state is AcquisitionState.SUCCEEDED:
            return _page(200, "Signed in", f"{status.detail}. You may close this window.")
        return _page(400, "Sign-in failed", status.detail or "The sign-in did not succeed.")

    app.add_api_route(
        "/oauth/callback",
        oauth_callback,
        methods=["GET", "POST"],
        tags=["oauth"],
        response_class=HTMLResponse,
        summary="OAuth redirect URI for authorization-code sign-ins",
    )

    # --- devices ----------------------------------------------------------------------

    @app.post("/v1/jobs", tags=["devices"], status_code=202)
    async def submit_job(
        device: Annotated[Device, Depends(device_auth)],
        job: Annotated[str, Form(description="The job as JSON (see JobSubmission)")],
        files: Annotated[list[UploadFile], File(description="Attachments")] = [],  # noqa: B006
    ) -> JobAccepted:
        try:
            submission = JobSubmission.model_validate_json(job)
        except ValidationError as exc:
            raise Problem(422, "invalid-job", "Invalid job", summarise(exc)) from None
        return await runtime().intake.submit(device, submission, files)

    @app.post("/v1/device/sign-ins", tags=["devices"], status_code=201)
    async def start_user_sign_in(
        sign_in: UserSignIn, device: Annotated[Device, Depends(device_auth)]
    ) -> AcquisitionStarted:
        """The panel's OAuth screen for a login user: a code to enter, or a URL for the browser."""
        tenant = await tenant_or_404(device.tenant_id)
        flow = sign_in.flow or (
            AcquisitionFlow.AUTHORIZATION_CODE
            if tenant.provider is Provider.GOOGLE
            else AcquisitionFlow.DEVICE_CODE
        )
        request = StartAcquisition(
            principal=_principal(device.tenant_id, PrincipalKind.USER, sign_in.user),
            flow=flow,
            redirect_uri=f"{settings.public_url.rstrip('/')}/oauth/callback",
        )
        started = AcquisitionStarted.model_validate_json(await token_rpc(request, START_ACQUISITION_SUBJECT))
        if started.error:
            raise Problem(409, "acquisition-refused", "Sign-in refused", started.error)
        return started

    @app.get("/v1/device/sign-ins/{acquisition_id}", tags=["devices"])
    async def user_sign_in_status(
        acquisition_id: str, device: Annotated[Device, Depends(device_auth)]
    ) -> AcquisitionStatus:
        request = AcquisitionStatusRequest(acquisition_id=acquisition_id, tenant_id=device.tenant_id)
        return AcquisitionStatus.model_validate_json(await token_rpc(request, ACQUISITION_STATUS_SUBJECT))

    @app.get("/v1/device/information", tags=["devices"])
    async def device_information(device: Annotated[Device, Depends(device_auth)]) -> list[AlertView]:
        """The device's [Information] screen: the tenant's warnings (a dead or expiring
        administrator token, SMTP AUTH off, …) and those for users at this device."""
        request = ListAlerts(tenant_id=device.tenant_id, device_id=device.device_id)
        return list(AlertList.model_validate_json(await rpc(request, ALERT_LIST_SUBJECT, "notifier")).alerts)

    @app.post("/v1/device/events", tags=["devices"], status_code=202)
    async def report_device_event(
        report: DeviceReport, device: Annotated[Device, Depends(device_auth)]
    ) -> dict[str, str]:
        """A user logged out, or the system auto reset ran: Auto Delete acts on these."""
        common = {
            "event_id": uuid.uuid4().hex,
            "tenant_id": device.tenant_id,
            "device_id": device.device_id,
            "occurred_at": datetime.now(UTC),
        }
        event: DeviceEventBase
        if report.kind == "user_logged_out":
            if report.user is None:
                raise Problem(422, "user-required", "User required", "a logout names the user who logged out")
            event = UserLoggedOut(**common, user=report.user)
        else:
            event = AutoResetTriggered(**common, user=report.user)
        try:
            await broker.publish(
                event,
                device_event_subject(event.kind),
                headers={"Nats-Msg-Id": event.event_id},
                stream=streams.EVENTS_STREAM,
                timeout=settings.publish_timeout_s,
            )
        except (NatsError, TimeoutError) as exc:
            raise Problem(
                503,
                "bus-unavailable",
                "Event bus unavailable",
                "report the event again",
                {"Retry-After": "5"},
            ) from exc
        return {"event_id": event.event_id}

    @app.get("/v1/jobs/{job_id}", tags=["devices"])
    async def job_status(job_id: str, device: Annotated[Device, Depends(device_auth)]) -> JobStatus:
        document = await runtime().store.job(job_id)
        if document is None or document["tenant_id"] != device.tenant_id:
            raise Problem(404, "job-not-found", "Unknown job", f"no job {job_id!r} for this device's tenant")
        return JobStatus.of(document)

    @app.exception_handler(ValidationError)
    async def on_validation_error(request: Request, exc: ValidationError) -> JSONResponse:
        return await handle_problem(
            request, Problem(422, "invalid-request", "Invalid request", summarise(exc))
        )

    if telemetry.tracing or telemetry.metering:
        # One span per request (the root of a job's trace) and the HTTP server metric;
        # probes stay out of both.
        app.add_middleware(
            HttpTelemetry,
            tracer=(telemetry.tracer_provider or NoOpTracerProvider()).get_tracer(
                "fleetmail.job-gateway.http"
            ),
            meter=telemetry.meter,
            excluded_paths=("/readyz", "/healthz"),
        )
    return app


def _principal(tenant_id: str, kind: PrincipalKind, address: str) -> Principal:
    if _UNSAFE.search(address) or "@" not in address:
        raise Problem(422, "invalid-address", "Invalid address", f"not an e-mail address: {address!r}")
    return Principal(tenant_id=tenant_id, kind=kind, address=address)


def _page(status: int, title: str, text: str) -> HTMLResponse:
    body = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )
    return HTMLResponse(body, status_code=status)
