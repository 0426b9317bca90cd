"""The device's own screens: a login user's OAuth sign-in, the [Information] screen, and the
events that drive Auto Delete (a user logged out, the auto reset ran)."""

from fastapi import APIRouter
from fleetmail_contracts.alerts import AlertView
from fleetmail_contracts.tokens import AcquisitionStarted, AcquisitionState, AcquisitionStatus, PrincipalKind

from ...errors import (
    AcquisitionRefused,
    DeviceUnauthorized,
    EventBusUnavailable,
    InvalidAddress,
    NotifierUnavailable,
    OutsideTenantDomains,
    ServiceFailed,
    TenantNotFound,
    TokenServiceUnavailable,
    UserRequired,
)
from ...schemas import DeviceEventAccepted, DeviceReport, UserSignIn
from ..deps import DeviceDep, ServicesDep
from ..problems import documented

router = APIRouter(prefix="/v1/device", tags=["devices"], responses=documented(DeviceUnauthorized))


@router.post(
    "/sign-ins",
    status_code=201,
    responses=documented(
        TenantNotFound,
        InvalidAddress,
        OutsideTenantDomains,
        AcquisitionRefused,
        TokenServiceUnavailable,
        ServiceFailed,
    ),
)
async def start_user_sign_in(
    sign_in: UserSignIn, device: DeviceDep, services: ServicesDep
) -> AcquisitionStarted:
    """The panel's OAuth screen for a login user: a code to enter, or a URL for the browser.
    The sign-in is always for the device's own tenant, and the user's session is noted on the
    device (Auto Delete deletes their token at its auto reset)."""
    tenant = await services.tenants.get(device.tenant_id)
    started = await services.tokens.start_user_sign_in(tenant, sign_in.user, sign_in.flow)
    await services.devices.note_session(device, sign_in.user)  # Auto Delete at its auto reset
    return started


@router.get("/sign-ins/{acquisition_id}", responses=documented(TokenServiceUnavailable, ServiceFailed))
async def user_sign_in_status(
    acquisition_id: str, device: DeviceDep, services: ServicesDep
) -> AcquisitionStatus:
    """A sign-in's state; one started by another tenant's device is unknown here. A user's
    sign-in seen succeeded here is noted on the device: a message over SMTP from it, From
    that user, may then use their grant."""
    status = await services.tokens.acquisition_status(device.tenant_id, acquisition_id)
    principal = status.principal
    if status.state is AcquisitionState.SUCCEEDED and principal is not None:
        if principal.kind is PrincipalKind.USER:
            await services.devices.note_sign_in(device, principal.address)
    return status


@router.get("/information", responses=documented(NotifierUnavailable))
async def device_information(device: DeviceDep, services: ServicesDep) -> list[AlertView]:
    """The device's [Information] screen: the tenant's warnings (a dead or expiring
    administrator token, SMTP AUTH off, …) and those for users at this device."""
    return await services.alerts.for_device(device)


@router.post("/events", status_code=202, responses=documented(UserRequired, EventBusUnavailable))
async def report_device_event(
    report: DeviceReport, device: DeviceDep, services: ServicesDep
) -> DeviceEventAccepted:
    """A user logged out, or the system auto reset ran: Auto Delete acts on these."""
    return DeviceEventAccepted(event_id=await services.device_events.report(device, report))
