"""The From policy (the device's [Change the "From" Address] setting) as a pure decision."""

from __future__ import annotations

from dataclasses import dataclass

from fleetmail_contracts.jobs import ADMINISTRATOR_FUNCTIONS, JobBase, JobFunction
from fleetmail_contracts.tenants import FromPolicy, TenantSettings
from fleetmail_contracts.tokens import PrincipalKind

from ..errors import SenderNotAllowed


@dataclass(frozen=True)
class Sender:
    address: str
    kind: PrincipalKind


def resolve_sender(job: JobBase, function: JobFunction, tenant: TenantSettings) -> Sender:
    """Which address the job is sent from, and so whose grant authenticates it.

    Administrator functions, and every job under the administrator policy, are sent as the
    administrator. Internet Fax is always sent as the machine address, whatever the policy:
    the device sets it to the administrator address, so it is sent with the administrator's
    grant too (a login user's address never becomes a fax machine's).
    """
    admin = tenant.administrator_address
    if (
        function in ADMINISTRATOR_FUNCTIONS
        or function is JobFunction.INTERNET_FAX_TX
        or tenant.from_policy is FromPolicy.ADMINISTRATOR_ADDRESS
    ):
        if admin is None:
            raise SenderNotAllowed(
                f"tenant {tenant.tenant_id!r} has no administrator e-mail address registered"
            )
        if function is JobFunction.INTERNET_FAX_TX:
            machine = getattr(job, "machine_address", None)
            if machine is not None and machine.casefold() != admin.casefold():
                raise SenderNotAllowed(
                    f"Internet Fax is sent from the machine address {machine}, which must equal "
                    f"the administrator address {admin}"
                )
        return Sender(admin, PrincipalKind.ADMINISTRATOR)
    if job.login_user is None:
        raise SenderNotAllowed(
            f"the From policy is {tenant.from_policy.value} but no user is logged in at the device"
        )
    if tenant.from_policy is FromPolicy.ALLOW and job.requested_from is not None:
        if job.requested_from.casefold() != job.login_user.casefold():
            raise SenderNotAllowed(
                f"{job.login_user} may not send as {job.requested_from}: fleetmail only sends "
                "from the signed-in user's own address"
            )
    return Sender(job.login_user, PrincipalKind.USER)
