"""What job-gateway asks of token-service and the notifier, and the device events it
publishes: tenant credentials, sign-ins (acquisitions), grants, alerts.

The other services decide; this checks what the gateway owns first (the tenant, the
administrator address, the address's form), relays the request and turns a refusal or
silence into the gateway's own errors.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from fleetmail_contracts import streams
from fleetmail_contracts.alerts import (
    ALERT_ACKNOWLEDGE_SUBJECT,
    ALERT_COUNTS_SUBJECT,
    ALERT_LIST_SUBJECT,
    AcknowledgeAlert,
    AlertCounts,
    AlertList,
    AlertView,
    CountAlerts,
    ListAlerts,
)
from fleetmail_contracts.credentials import (
    SET_CREDENTIALS_SUBJECT,
    VIEW_CREDENTIALS_SUBJECT,
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
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import (
    ACQUISITION_STATUS_SUBJECT,
    COMPLETE_AUTHORIZATION_SUBJECT,
    DELETE_GRANT_SUBJECT,
    DELETE_USER_GRANTS_SUBJECT,
    GRANT_STATUS_SUBJECT,
    GRANT_SUMMARY_SUBJECT,
    START_ACQUISITION_SUBJECT,
    AcquisitionFlow,
    AcquisitionStarted,
    AcquisitionStatus,
    AcquisitionStatusRequest,
    CompleteAuthorization,
    DeleteGrant,
    DeleteGrantReply,
    DeleteUserGrants,
    DeleteUserGrantsReply,
    GrantStatus,
    GrantStatusReply,
    GrantStatusRequest,
    GrantSummaryReply,
    GrantSummaryRequest,
    Principal,
    PrincipalKind,
    StartAcquisition,
)
from fleetmail_runtime.bus import BusUnavailable, RequestFailed
from pydantic import BaseModel, ValidationError

from ..domain import Device, check_principal_address, default_sign_in_flow
from ..errors import (
    AcquisitionRefused,
    AlertNotFound,
    CredentialsRefused,
    EventBusUnavailable,
    NoAdministratorAddress,
    NotifierUnavailable,
    OutsideTenantDomains,
    ServiceFailed,
    TokenServiceUnavailable,
    Unavailable,
    UserRequired,
)
from ..ports import Publisher, Requester
from ..schemas import CredentialsInput, DeviceReport
from ..settings import GatewaySettings
from .devices import DeviceDirectory

R = TypeVar("R", bound=BaseModel)


async def _ask(
    requester: Requester,
    message: BaseModel,
    subject: str,
    reply: type[R],
    timeout_s: float,
    unavailable: type[Unavailable],
    service: str,
) -> R:
    try:
        return await requester.request(message, subject, reply, timeout_s=timeout_s)
    except RequestFailed as exc:  # it answered, with why it could not do it
        if exc.transient:
            raise unavailable(f"{service} could not do it just now: {exc.reason}; try again") from exc
        raise ServiceFailed(f"{service} could not carry out the request: {exc.reason}") from exc
    except BusUnavailable as exc:
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "no answer"
        raise unavailable(f"{service} did not answer ({cause}); try again") from exc
    except ValidationError as exc:  # the other side's fault, not the caller's request
        raise unavailable(f"{service} gave an answer that could not be read; try again") from exc


class TokenRelay:
    """Credentials, sign-ins and grants: token-service's, asked for over the bus."""

    def __init__(self, requester: Requester, settings: GatewaySettings) -> None:
        self.requester = requester
        self.timeout_s = settings.token_rpc_timeout_s
        self.redirect_uri = f"{settings.public_url.rstrip('/')}/oauth/callback"

    async def _ask(self, message: BaseModel, subject: str, reply: type[R]) -> R:
        return await _ask(
            self.requester, message, subject, reply, self.timeout_s, TokenServiceUnavailable, "token-service"
        )

    async def set_credentials(self, tenant_id: str, given: CredentialsInput) -> CredentialsView:
        """Stored encrypted by token-service; the answer says what is set, never the secrets."""
        request = SetCredentials(tenant_id=tenant_id, **given.model_dump())
        view = await self._ask(request, SET_CREDENTIALS_SUBJECT, CredentialsView)
        if view.error:
            raise CredentialsRefused(view.error)
        return view

    async def credentials(self, tenant_id: str) -> CredentialsView:
        return await self._ask(
            ViewCredentials(tenant_id=tenant_id), VIEW_CREDENTIALS_SUBJECT, CredentialsView
        )

    async def start_administrator_sign_in(
        self, tenant: TenantSettings, flow: AcquisitionFlow | None
    ) -> AcquisitionStarted:
        if tenant.administrator_address is None:
            raise NoAdministratorAddress("set the tenant's administrator e-mail address first")
        principal = Principal(
            tenant_id=tenant.tenant_id, kind=PrincipalKind.ADMINISTRATOR, address=tenant.administrator_address
        )
        return await self._start(tenant, principal, flow, "Token acquisition refused")

    async def start_user_sign_in(
        self, tenant: TenantSettings, user: str, flow: AcquisitionFlow | None
    ) -> AcquisitionStarted:
        check_principal_address(user)
        principal = Principal(tenant_id=tenant.tenant_id, kind=PrincipalKind.USER, address=user)
        return await self._start(tenant, principal, flow, "Sign-in refused")

    async def _start(
        self, tenant: TenantSettings, principal: Principal, flow: AcquisitionFlow | None, refused: str
    ) -> AcquisitionStarted:
        request = StartAcquisition(
            principal=principal,
            flow=flow or default_sign_in_flow(tenant, principal.kind),
            redirect_uri=self.redirect_uri,
        )
        # App-only too: an app-only token acts for any mailbox of the directory, so the
        # tenant's mail domains bound it as they bound a sign-in.
        if not tenant.accepts_sign_in(principal.address):
            listed = ", ".join(tenant.effective_mail_domains()) or "none"
            raise OutsideTenantDomains(
                f"{principal.address} is not in the mail domains of tenant {tenant.tenant_id!r} "
                f"({listed}): only the tenant's own people sign in for it; the owner key lists "
                "its domains (mail_domains)",
                title=refused,
            )
        started = await self._ask(request, START_ACQUISITION_SUBJECT, AcquisitionStarted)
        if started.error:
            raise AcquisitionRefused(started.error, title=refused)
        return started

    async def acquisition_status(self, tenant_id: str, acquisition_id: str) -> AcquisitionStatus:
        """A sign-in's state; another tenant's acquisition is unknown to this one."""
        request = AcquisitionStatusRequest(acquisition_id=acquisition_id, tenant_id=tenant_id)
        return await self._ask(request, ACQUISITION_STATUS_SUBJECT, AcquisitionStatus)

    async def complete_authorization(self, answer: CompleteAuthorization) -> AcquisitionStatus:
        return await self._ask(answer, COMPLETE_AUTHORIZATION_SUBJECT, AcquisitionStatus)

    async def grants(self, tenant_id: str) -> GrantStatusReply:
        return await self._ask(
            GrantStatusRequest(tenant_id=tenant_id), GRANT_STATUS_SUBJECT, GrantStatusReply
        )

    async def fleet_summary(self, tenant_ids: Sequence[str] | None) -> GrantSummaryReply:
        """Every administrator grant of these tenants (None: all) and their users to sign in,
        in one request."""
        request = GrantSummaryRequest(tenant_ids=tuple(tenant_ids) if tenant_ids is not None else None)
        return await self._ask(request, GRANT_SUMMARY_SUBJECT, GrantSummaryReply)

    async def has_user_grant(self, tenant_id: str, address: str) -> bool:
        """Whether the login user has a live grant (signed in at some device)."""
        wanted = address.casefold()
        return any(
            grant.principal.kind is PrincipalKind.USER
            and grant.principal.address.casefold() == wanted
            and grant.status is GrantStatus.ACTIVE
            for grant in (await self.grants(tenant_id)).grants
        )

    async def delete_user_grant(self, tenant_id: str, address: str) -> DeleteGrantReply:
        """The [Delete] of Refresh Tokens (User): the user signs in again next time."""
        check_principal_address(address)
        principal = Principal(tenant_id=tenant_id, kind=PrincipalKind.USER, address=address)
        request = DeleteGrant(principal=principal, reason="requested")
        return await self._ask(request, DELETE_GRANT_SUBJECT, DeleteGrantReply)

    async def delete_user_grants(self, tenant_id: str) -> DeleteUserGrantsReply:
        """[Delete] of Refresh Tokens (User) for every login user of the tenant at once (the
        administrator's token stays): each signs in again at the device next time."""
        request = DeleteUserGrants(tenant_id=tenant_id)
        return await self._ask(request, DELETE_USER_GRANTS_SUBJECT, DeleteUserGrantsReply)


class AlertRelay:
    """The notifier's alerts, as administrators and devices see them."""

    def __init__(self, requester: Requester, settings: GatewaySettings) -> None:
        self.requester = requester
        self.timeout_s = settings.token_rpc_timeout_s

    async def _ask(self, message: BaseModel, subject: str) -> list[AlertView]:
        found = await _ask(
            self.requester, message, subject, AlertList, self.timeout_s, NotifierUnavailable, "notifier"
        )
        return list(found.alerts)

    async def for_administrators(self, tenant_id: str, include_resolved: bool) -> list[AlertView]:
        request = ListAlerts(tenant_id=tenant_id, include_resolved=include_resolved)
        return [a for a in await self._ask(request, ALERT_LIST_SUBJECT) if a.for_administrators]

    async def counts(self, tenant_ids: Sequence[str] | None) -> AlertCounts:
        """Unresolved alerts for administrators by tenant and severity, in one request."""
        request = CountAlerts(tenant_ids=tuple(tenant_ids) if tenant_ids is not None else None)
        return await _ask(
            self.requester,
            request,
            ALERT_COUNTS_SUBJECT,
            AlertCounts,
            self.timeout_s,
            NotifierUnavailable,
            "notifier",
        )

    async def acknowledge(self, tenant_id: str, alert_id: str, by: str) -> AlertView:
        request = AcknowledgeAlert(tenant_id=tenant_id, alert_id=alert_id, by=by)
        found = await self._ask(request, ALERT_ACKNOWLEDGE_SUBJECT)
        if not found:
            raise AlertNotFound(f"no open alert {alert_id!r}")
        return found[0]

    async def for_device(self, device: Device) -> list[AlertView]:
        """The device's [Information] screen: the tenant's warnings and its users'."""
        request = ListAlerts(tenant_id=device.tenant_id, device_id=device.device_id)
        return await self._ask(request, ALERT_LIST_SUBJECT)


class DeviceEvents:
    """A user logged out, or the system auto reset ran: Auto Delete acts on these."""

    def __init__(
        self,
        publisher: Publisher,
        settings: GatewaySettings,
        sessions: DeviceDirectory,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.publisher = publisher
        self.timeout_s = settings.publish_timeout_s
        self.sessions = sessions
        self.clock = clock

    async def report(self, device: Device, report: DeviceReport) -> str:
        """Publish the device's event; its id. An auto reset names every user whose session
        was on the device since its last one (their sign-ins and jobs from it); once it is
        published, those sessions are over, as a logout ends its user's."""
        event_id = uuid.uuid4().hex
        event: DeviceEventBase
        ended: list[str] = [report.user] if report.user else []
        if report.kind == "user_logged_out":
            if report.user is None:
                raise UserRequired("a logout names the user who logged out")
            event = UserLoggedOut(
                event_id=event_id,
                tenant_id=device.tenant_id,
                device_id=device.device_id,
                occurred_at=self.clock(),
                user=report.user,
            )
        else:
            sessions = await self.sessions.session_users(device)
            ended += sessions
            event = AutoResetTriggered(
                event_id=event_id,
                tenant_id=device.tenant_id,
                device_id=device.device_id,
                occurred_at=self.clock(),
                user=report.user,
                session_users=tuple(sessions),
            )
        try:
            await self.publisher.publish(
                event,
                device_event_subject(event.kind),
                stream=streams.EVENTS_STREAM,
                msg_id=event.event_id,
                timeout_s=self.timeout_s,
            )
        except BusUnavailable as exc:
            raise EventBusUnavailable("report the event again") from exc
        if ended:
            # Only the sessions named: a user whose job came in meanwhile stays noted.
            await self.sessions.end_sessions(device, ended)
        return event.event_id
