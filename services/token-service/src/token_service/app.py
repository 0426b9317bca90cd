"""token-service wiring: broker, subscribers, start-up and shut-down. No decisions here."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
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
    GRANT_STATUS_SUBJECT,
    START_ACQUISITION_SUBJECT,
    AccessTokenReply,
    AccessTokenRequest,
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
    StartAcquisition,
    TokenEventBase,
    token_event_subject,
)
from fleetmail_runtime.bus import declare_streams, events_stream, make_broker
from fleetmail_runtime.crypto import load_or_create_keyring
from fleetmail_runtime.mongo import connect_mongo
from fleetmail_runtime.periodic import periodic
from fleetmail_runtime.telemetry import configure_telemetry, gauges_polled
from fleetmail_runtime.tenants import TenantDirectory, UnknownTenant

from .acquisition import Acquirer
from .adapters.acquisitions import AcquisitionStore
from .adapters.credentials import CredentialStore
from .adapters.grants import GrantStore
from .errors import TokenServiceError
from .providers import Providers
from .service import Clock, TokenService, utc_now
from .settings import TokenSettings
from .telemetry import GrantGauges

SERVICE = "token-service"
QUEUE = "token-service"
DEVICE_EVENTS_DURABLE = streams.TOKEN_DEVICES_CONSUMER[1]
log = logging.getLogger(SERVICE)


@dataclass
class Wiring:
    broker: NatsBroker
    app: FastStream
    service: TokenService | None = None
    acquirer: Acquirer | None = None
    credentials: CredentialStore | None = None


def build_app(settings: TokenSettings, *, clock: Clock = utc_now) -> Wiring:
    telemetry = configure_telemetry(SERVICE, settings.common)
    broker = make_broker(settings.common, SERVICE, telemetry)
    wiring = Wiring(broker=broker, app=FastStream(broker))

    def service() -> TokenService:
        assert wiring.service is not None, "token-service is not started"
        return wiring.service

    def acquirer() -> Acquirer:
        assert wiring.acquirer is not None, "token-service is not started"
        return wiring.acquirer

    def credentials() -> CredentialStore:
        assert wiring.credentials is not None, "token-service is not started"
        return wiring.credentials

    async def publish(event: TokenEventBase) -> None:
        await broker.publish(
            event,
            token_event_subject(event.kind),  # type: ignore[attr-defined]
            headers={"Nats-Msg-Id": event.event_id},
            stream=streams.EVENTS_STREAM,
        )
        log.info(
            "token event %s for %s/%s",
            event.kind,  # type: ignore[attr-defined]
            event.principal.tenant_id,
            event.principal.kind.value,
        )

    @broker.subscriber(ACCESS_TOKEN_SUBJECT, queue=QUEUE, max_workers=settings.rpc_concurrency)
    async def on_access_token(request: AccessTokenRequest) -> AccessTokenReply:
        return await service().access_token(request)

    @broker.subscriber(START_ACQUISITION_SUBJECT, queue=QUEUE)
    async def on_start_acquisition(request: StartAcquisition) -> AcquisitionStarted:
        try:
            return await acquirer().start(request)
        except (TokenServiceError, UnknownTenant) as exc:
            return AcquisitionStarted(
                acquisition_id="",
                flow=request.flow,
                state=AcquisitionState.FAILED,
                expires_at=datetime.now(UTC),
                error=str(exc),
            )

    @broker.subscriber(ACQUISITION_STATUS_SUBJECT, queue=QUEUE)
    async def on_acquisition_status(request: AcquisitionStatusRequest) -> AcquisitionStatus:
        return await acquirer().status(request.acquisition_id, request.tenant_id)

    @broker.subscriber(COMPLETE_AUTHORIZATION_SUBJECT, queue=QUEUE)
    async def on_complete_authorization(request: CompleteAuthorization) -> AcquisitionStatus:
        return await acquirer().complete(request)

    @broker.subscriber(GRANT_STATUS_SUBJECT, queue=QUEUE)
    async def on_grant_status(request: GrantStatusRequest) -> GrantStatusReply:
        grants = await service().grants.list_tenant(request.tenant_id)
        return GrantStatusReply(grants=tuple(g.view() for g in grants))

    @broker.subscriber(DELETE_GRANT_SUBJECT, queue=QUEUE)
    async def on_delete_grant(request: DeleteGrant) -> DeleteGrantReply:
        return DeleteGrantReply(deleted=await service().delete(request.principal, request.reason))

    @broker.subscriber(SET_CREDENTIALS_SUBJECT, queue=QUEUE)
    async def on_set_credentials(request: SetCredentials) -> CredentialsView:
        try:
            view = await credentials().set(request, clock())
        except TokenServiceError as exc:
            return CredentialsView(tenant_id=request.tenant_id, error=str(exc))
        await service().credentials_changed(request.tenant_id)
        log.info("credentials of tenant %s changed", request.tenant_id)
        return view

    @broker.subscriber(VIEW_CREDENTIALS_SUBJECT, queue=QUEUE)
    async def on_view_credentials(request: ViewCredentials) -> CredentialsView:
        return await credentials().view(request.tenant_id)

    @broker.subscriber(SMTP_CREDENTIALS_SUBJECT, queue=QUEUE)
    async def on_smtp_credentials(request: SmtpCredentialsRequest) -> SmtpCredentialsReply:
        """For mail-service only: a tenant with OAuth 2.0 off signs in with these."""
        secrets = await credentials().get(request.tenant_id)
        return SmtpCredentialsReply(username=secrets.smtp_username, password=secrets.smtp_password)

    @broker.subscriber(WEBHOOK_SECRET_SUBJECT, queue=QUEUE)
    async def on_webhook_secret(request: WebhookSecretRequest) -> WebhookSecretReply:
        """For notifier only: the key of the tenant's webhook signatures."""
        return WebhookSecretReply(secret=(await credentials().get(request.tenant_id)).webhook_secret)

    @broker.subscriber(
        f"{DEVICE_EVENT_PREFIX}*",
        stream=events_stream(settings.common),
        durable=DEVICE_EVENTS_DURABLE,
        pull_sub=PullSub(batch_size=16, timeout=1.0),
        config=ConsumerConfig(max_deliver=10, ack_wait=30),
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_device_event(event: dict[str, Any]) -> None:
        """Auto Delete: a user's grant goes when the user logs out or the device auto-resets."""
        user, tenant_id = event.get("user"), event.get("tenant_id")
        if not user or not tenant_id:
            return
        try:
            tenant = await service().tenants.get(tenant_id)
        except UnknownTenant:
            return
        if not tenant.auto_delete:
            return
        principal = Principal(tenant_id=tenant_id, kind=PrincipalKind.USER, address=user)
        reason = "user_logged_out" if event.get("kind") == "user_logged_out" else "auto_reset"
        await service().delete(principal, reason)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        mongo = connect_mongo(settings.common, SERVICE)
        keyring = load_or_create_keyring(settings.common.keyring_path())
        grants = GrantStore(mongo, settings.database, keyring)
        await grants.ensure_indexes()
        acquisitions = AcquisitionStore(mongo, settings.database, keyring)
        await acquisitions.ensure_indexes()
        wiring.credentials = CredentialStore(mongo, settings.database, keyring)
        tenants = TenantDirectory(broker)
        await broker.connect()
        await declare_streams(broker, settings.common, uses=(streams.TENANTS_BUCKET,))
        await tenants.start()
        providers = Providers.from_settings(settings, wiring.credentials)
        wiring.service = TokenService(settings, grants, tenants, providers, publish, clock)
        wiring.acquirer = Acquirer(
            settings,
            providers,
            grants,
            acquisitions,
            tenants,
            publish,
            wiring.service.prime,
            wiring.service.acquire_app_only,
            clock,
            wiring.service.owner,
        )
        try:
            async with (
                periodic(settings.keepalive_interval_s, wiring.service.sweep, "the keep-alive sweep"),
                periodic(
                    settings.device_poll_check_s,
                    wiring.acquirer.adopt_orphans,
                    "the device-code takeover check",
                ),
                gauges_polled(
                    telemetry,
                    broker,
                    [streams.TOKEN_DEVICES_CONSUMER],
                    GrantGauges(grants, clock).poll,
                ),
            ):
                yield
        finally:
            await wiring.acquirer.close()
            await tenants.stop()
            await mongo.close()
            telemetry.shutdown()

    async def announce_ready() -> None:
        log.info("token-service ready")

    wiring.app = FastStream(broker, lifespan=lifespan, after_startup=[announce_ready])
    return wiring
