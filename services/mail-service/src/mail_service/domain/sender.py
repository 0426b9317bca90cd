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
    """The mailbox whose grant authenticates the message (and its envelope sender)."""
    kind: PrincipalKind
    from_address: str | None = None
    """The message's From when it is not the mailbox's own: an address the login user may
    send as (From policy allow)."""

    @property
    def shown(self) -> str:
        """The From header."""
        return self.from_address or self.address


def _administrator(tenant: TenantSettings, why: str) -> Sender:
    admin = tenant.administrator_address
    if admin is None:
        raise SenderNotAllowed(
            f"tenant {tenant.tenant_id!r} has no administrator e-mail address registered{why}"
        )
    return Sender(admin, PrincipalKind.ADMINISTRATOR)


def resolve_sender(job: JobBase, function: JobFunction, tenant: TenantSettings) -> Sender:
    """Which address the job is sent from, and so whose grant authenticates it.

    Administrator functions, and every job under the administrator policy, are sent as the
    administrator. Internet Fax is always sent as the machine address, whatever the policy:
    the device sets it to the administrator address, so it is sent with the administrator's
    grant too (a login user's address never becomes a fax machine's).

    Under [Login User Address] a job is sent as its login user, who must be one of the
    tenant's people (an address in its mail domains). Under [Allow] the job may
    carry a From the login user may send as — their own address or one the tenant lists for
    them (`send_as`) — sent with the login user's grant; a job without a login user is sent
    as the administrator, as the device does when nobody is logged in.
    """
    if (
        function in ADMINISTRATOR_FUNCTIONS
        or function is JobFunction.INTERNET_FAX_TX
        or tenant.from_policy is FromPolicy.ADMINISTRATOR_ADDRESS
    ):
        sender = _administrator(tenant, "")
        if function is JobFunction.INTERNET_FAX_TX:
            machine = getattr(job, "machine_address", None)
            if machine is not None and machine.casefold() != sender.address.casefold():
                raise SenderNotAllowed(
                    f"Internet Fax is sent from the machine address {machine}, which must equal "
                    f"the administrator address {sender.address}"
                )
        return sender
    allow = tenant.from_policy is FromPolicy.ALLOW
    if job.login_user is None:
        if allow:
            return _administrator(tenant, " to send a job without a login user from")
        raise SenderNotAllowed(
            f"the From policy is {tenant.from_policy.value} but no user is logged in at the device"
        )
    if not tenant.accepts_sign_in(job.login_user):
        # Fails rather than waits: a waiting job asks its user to sign in, by e-mail too,
        # and only the tenant's own people are asked (job-gateway refuses such jobs already).
        raise SenderNotAllowed(
            f"the login user {job.login_user} is not in the tenant's mail domains "
            f"({', '.join(tenant.effective_mail_domains()) or 'none'})"
        )
    requested = job.requested_from
    if allow and requested is not None and requested.casefold() != job.login_user.casefold():
        if not tenant.may_send_as(job.login_user, requested):
            raise SenderNotAllowed(
                f"{job.login_user} may not send as {requested}: the tenant lists no such send-as "
                f"address for this user (send_as in the tenant's settings)"
            )
        return Sender(job.login_user, PrincipalKind.USER, requested)
    return Sender(job.login_user, PrincipalKind.USER)
