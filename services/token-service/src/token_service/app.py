"""token-service's bootstrap: every object built here, typed, on one `ServiceRuntime`; the
subscribers only hand requests to `handlers.py`. No decisions here, and no I/O until the
runtime's lifespan starts."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from faststream import AckPolicy, FastStream
from faststream.nats import ConsumerConfig, NatsBroker, PullSub
from fleetmail_contracts import streams
from fleetmail_contracts.credentials import (
    SET_CREDENTIALS_SUBJECT,
    SMTP_CREDENTIALS_SUBJECT,
    VIEW_CREDENTIALS_SUBJECT,
    WEBHOOK_SECRET_SUBJECT,
    CredentialsView,
    SetCredentials,
    SmtpCredentialsReply,
    SmtpCredentialsRequest,
    ViewCredentials,
    WebhookSecretReply,
    WebhookSecretRequest,
)
from fleetmail_contracts.streams import DEVICE_EVENT_PREFIX
from fleetmail_contracts.tokens import (
    ACCESS_TOKEN_SUBJECT,
    ACQUISITION_STATUS_SUBJECT,
    COMPLETE_AUTHORIZATION_SUBJECT,
    DELETE_GRANT_SUBJECT,
    DELETE_USER_GRANTS_SUBJECT,
    GRANT_STATUS_SUBJECT,
    GRANT_SUMMARY_SUBJECT,
    START_ACQUISITION_SUBJECT,
    AccessTokenReply,
    AccessTokenRequest,
    AcquisitionStarted,
    AcquisitionStatus,
    AcquisitionStatusRequest,
    CompleteAuthorization,
    DeleteGrant,
    DeleteGrantReply,
    DeleteUserGrants,
    DeleteUserGrantsReply,
    GrantStatusReply,
    GrantStatusRequest,
    GrantSummaryReply,
    GrantSummaryRequest,
    StartAcquisition,
)
from fleetmail_runtime.bus import events_stream
from fleetmail_runtime.lifecycle import ServiceRuntime

from . import handlers
from .adapters.acquisitions import MongoAcquisitionStore
from .adapters.credentials import CredentialStore
from .adapters.events import BusEvents
from .adapters.grants import MongoGrantStore
from .adapters.keyring import KeyringAtStart
from .adapters.tenants import DirectoryTenants
from .ports import Clock, Sleeper
from .providers import Providers
from .service import TokenService, utc_now
from .settings import TokenSettings
from .telemetry import GrantGauges

SERVICE = "token-service"
QUEUE = "token-service"
DEVICE_EVENTS_DURABLE = streams.TOKEN_DEVICES_CONSUMER[1]
log = logging.getLogger(SERVICE)


@dataclass(frozen=True)
class TokenApp:
    app: FastStream
    runtime: ServiceRuntime
    service: TokenService
    credentials: CredentialStore


def build_app(
    settings: TokenSettings, *, clock: Clock = utc_now, sleeper: Sleeper = asyncio.sleep
) -> TokenApp:
    runtime = ServiceRuntime(SERVICE, settings.common, uses=(streams.TENANTS_BUCKET,))
    keyring = KeyringAtStart(settings.common.keyring_path())
    grants = MongoGrantStore(runtime.mongo, settings.database, keyring)
    acquisitions = MongoAcquisitionStore(runtime.mongo, settings.database, keyring)
    credentials = CredentialStore(runtime.mongo, settings.database, keyring)
    service = TokenService(
        settings,
        grants=grants,
        acquisitions=acquisitions,
        identity=Providers.from_settings(settings, credentials),
        tenants=DirectoryTenants(runtime.tenants),
        events=BusEvents(runtime.bus),
        clock=clock,
        sleeper=sleeper,
    )
    runtime.on_start(keyring.load)
    runtime.on_start(grants.ensure_indexes)
    runtime.on_start(acquisitions.ensure_indexes)
    runtime.on_stop(service.close)
    runtime.tenants.on_change(service.drift.tenant_changed)
    runtime.every(settings.keepalive_interval_s, service.keepalive.sweep, "the keep-alive sweep")
    runtime.every(
        settings.device_poll_check_s, service.device_codes.adopt_orphans, "the device-code takeover check"
    )
    runtime.gauges([streams.TOKEN_DEVICES_CONSUMER], GrantGauges(grants, clock).poll)
    subscribe(runtime.broker, settings, service, credentials, clock)

    async def announce_ready() -> None:
        log.info("token-service ready")

    app = FastStream(runtime.broker, lifespan=runtime.lifespan, after_startup=[announce_ready])
    return TokenApp(app=app, runtime=runtime, service=service, credentials=credentials)


def subscribe(
    broker: NatsBroker,
    settings: TokenSettings,
    service: TokenService,
    credentials: CredentialStore,
    clock: Clock,
) -> None:
    """Every subject token-service answers, each handed to its handler; every request is
    answered, with an `RpcFailure` when the handler could not carry it out."""

    @broker.subscriber(ACCESS_TOKEN_SUBJECT, queue=QUEUE, max_workers=settings.rpc_concurrency)
    @handlers.answered
    async def on_access_token(request: AccessTokenRequest) -> AccessTokenReply:
        return await handlers.access_token(service, request)

    @broker.subscriber(START_ACQUISITION_SUBJECT, queue=QUEUE)
    @handlers.answered
    async def on_start_acquisition(request: StartAcquisition) -> AcquisitionStarted:
        return await handlers.start_acquisition(service, request)

    @broker.subscriber(ACQUISITION_STATUS_SUBJECT, queue=QUEUE)
    @handlers.answered
    async def on_acquisition_status(request: AcquisitionStatusRequest) -> AcquisitionStatus:
        return await service.acquirer.status(request.acquisition_id, request.tenant_id)

    @broker.subscriber(COMPLETE_AUTHORIZATION_SUBJECT, queue=QUEUE)
    @handlers.answered
    async def on_complete_authorization(request: CompleteAuthorization) -> AcquisitionStatus:
        return await service.acquirer.complete(request)

    @broker.subscriber(GRANT_STATUS_SUBJECT, queue=QUEUE)
    @handlers.answered
    async def on_grant_status(request: GrantStatusRequest) -> GrantStatusReply:
        return await handlers.grant_status(service, request.tenant_id)

    @broker.subscriber(GRANT_SUMMARY_SUBJECT, queue=QUEUE)
    @handlers.answered
    async def on_grant_summary(request: GrantSummaryRequest) -> GrantSummaryReply:
        """The fleet overview's one question for every tenant it shows."""
        return await service.grants.fleet_summary(request.tenant_ids)

    @broker.subscriber(DELETE_GRANT_SUBJECT, queue=QUEUE)
    @handlers.answered
    async def on_delete_grant(request: DeleteGrant) -> DeleteGrantReply:
        return DeleteGrantReply(deleted=await service.deletion.delete(request.principal, request.reason))

    @broker.subscriber(DELETE_USER_GRANTS_SUBJECT, queue=QUEUE)
    @handlers.answered
    async def on_delete_user_grants(request: DeleteUserGrants) -> DeleteUserGrantsReply:
        return DeleteUserGrantsReply(deleted=await service.deletion.delete_users(request.tenant_id))

    @broker.subscriber(SET_CREDENTIALS_SUBJECT, queue=QUEUE)
    @handlers.answered
    async def on_set_credentials(request: SetCredentials) -> CredentialsView:
        return await handlers.set_credentials(service, credentials, request, clock)

    @broker.subscriber(VIEW_CREDENTIALS_SUBJECT, queue=QUEUE)
    @handlers.answered
    async def on_view_credentials(request: ViewCredentials) -> CredentialsView:
        return await credentials.view(request.tenant_id)

    @broker.subscriber(SMTP_CREDENTIALS_SUBJECT, queue=QUEUE)
    @handlers.answered
    async def on_smtp_credentials(request: SmtpCredentialsRequest) -> SmtpCredentialsReply:
        """For mail-service only: a tenant with OAuth 2.0 off signs in with these."""
        secrets = await credentials.get(request.tenant_id)
        return SmtpCredentialsReply(username=secrets.smtp_username, password=secrets.smtp_password)

    @broker.subscriber(WEBHOOK_SECRET_SUBJECT, queue=QUEUE)
    @handlers.answered
    async def on_webhook_secret(request: WebhookSecretRequest) -> WebhookSecretReply:
        """For notifier only: the key of the tenant's webhook signatures."""
        return WebhookSecretReply(secret=(await credentials.get(request.tenant_id)).webhook_secret)

    @broker.subscriber(
        f"{DEVICE_EVENT_PREFIX}*",
        stream=events_stream(settings.common),
        durable=DEVICE_EVENTS_DURABLE,
        pull_sub=PullSub(batch_size=16, timeout=1.0),
        config=ConsumerConfig(max_deliver=10, ack_wait=30),
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_device_event(event: dict[str, Any]) -> None:
        await handlers.device_event(service, event)
