"""What a message received over SMTP becomes: its function, by the device's rules, and its
login user, from its From. Pure.

A device that only speaks SMTP sends its scans and its notifications (counters, status,
TX reports) to the same server: its rules tell them apart by recipient, subject or From, the
first rule that matches naming the function; with no rule matching, the device's
`smtp_function` (a scan by default). A rule's patterns are globs — `*` any run of
characters, `?` one, case ignored, the whole value matched — read by a matcher that takes
time in proportion to the pattern's length times the value's, whatever the pattern: a tenant's pattern never runs
as a regular expression.

Under the login-user From policies ([Login User Address], [Allow]) the message's From is the
login user when it is an address in one of the tenant's mail domains: that user's grant
sends the job (and a job of a user who has not signed in waits for the sign-in).

A rule's recipient and subject are what a walk-up user types, and the administrator
functions and Internet Fax are sent with the administrator's grant: under those policies a
rule naming one of them applies only to the device's own notifications — a message From an
address that is not one of the tenant's users (the machine address, the administrator
address, or one outside the tenant's mail domains). A user's message skips such rules, and
is a scan when the device's own function is one of them: it is the user's, sent as the user.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.utils import parseaddr

from fleetmail_contracts.addresses import is_address
from fleetmail_contracts.jobs import ADMINISTRATOR_FUNCTIONS, JobFunction
from fleetmail_contracts.tenants import FromPolicy, TenantSettings

from .errors import OutsideTenantDomains
from .schemas import SmtpRule


def _fits(segment: str, text: str, start: int) -> bool:
    """`segment` (with `?` for any one character) is found in `text` at `start`."""
    if start < 0 or start + len(segment) > len(text):
        return False
    return all(p in ("?", c) for p, c in zip(segment, text[start : start + len(segment)], strict=True))


def glob_match(pattern: str, text: str) -> bool:
    """Whether the whole of `text` matches the glob `pattern` (case ignored). The pieces
    between stars are found leftmost, one after the other: no backtracking."""
    pattern, text = pattern.casefold(), text.casefold()
    first, *rest = pattern.split("*")
    if not rest:
        return len(text) == len(first) and _fits(first, text, 0)
    *middle, last = rest
    if len(first) + len(last) > len(text) or not _fits(first, text, 0):
        return False
    if not _fits(last, text, len(text) - len(last)):
        return False
    position, end = len(first), len(text) - len(last)
    for segment in middle:
        found = next((i for i in range(position, end - len(segment) + 1) if _fits(segment, text, i)), None)
        if found is None:
            return False
        position = found + len(segment)
    return True


def address_of(header: str) -> str | None:
    """The one address of a From header (`Name <user@example.com>` → `user@example.com`)."""
    _, address = parseaddr(header)
    return address if address and is_address(address) else None


def _matches(rule: SmtpRule, recipients: Sequence[str], subject: str, sender: str) -> bool:
    if rule.recipient is not None and not any(glob_match(rule.recipient, r) for r in recipients):
        return False
    if rule.subject is not None and not glob_match(rule.subject, subject):
        return False
    return rule.sender is None or glob_match(rule.sender, sender)


ADMINISTRATORS_GRANT = ADMINISTRATOR_FUNCTIONS | {JobFunction.INTERNET_FAX_TX}
"""The functions sent with the administrator's grant, whoever sends them."""


def sent_by_a_user(
    tenant: TenantSettings | None,
    sender: str | None,
    machine_address: str | None,
    rules: Sequence[SmtpRule] = (),
) -> bool:
    """Whether, under a login-user From policy, the message is From one of the tenant's users
    rather than the device's own notification sender (its machine address, the administrator
    address, an address a device rule names whole as its `sender` — no wildcard: the tenant's
    administrator said that address is the device's — or one outside the tenant's domains)."""
    if tenant is None or tenant.from_policy is FromPolicy.ADMINISTRATOR_ADDRESS or sender is None:
        return False
    if not tenant.accepts_sign_in(sender):
        return False
    named = (r.sender for r in rules if r.sender and "*" not in r.sender and "?" not in r.sender)
    own = {
        address.casefold() for address in (machine_address, tenant.administrator_address, *named) if address
    }
    return sender.casefold() not in own


def function_of(
    rules: Sequence[SmtpRule],
    default: JobFunction,
    recipients: Sequence[str],
    subject: str,
    sender: str,
    by_user: bool = False,
) -> JobFunction:
    """The function of the first rule the message matches; `default` when none does. A
    user's message (`by_user`) never becomes one sent with the administrator's grant."""
    for rule in rules:
        if by_user and rule.function in ADMINISTRATORS_GRANT:
            continue
        if _matches(rule, recipients, subject, sender):
            return rule.function
    if by_user and default in ADMINISTRATORS_GRANT:
        return JobFunction.SCAN_TO_EMAIL
    return default


def login_user_of(tenant: TenantSettings | None, function: JobFunction, sender: str | None) -> str | None:
    """The login user a message's From names, under the login-user From policies. A user
    function under [Login User Address] from an address outside the tenant's mail domains
    is refused (`OutsideTenantDomains`): no grant of this tenant can send it. Under [Allow]
    it has no login user and goes from the administrator address."""
    if tenant is None or tenant.from_policy is FromPolicy.ADMINISTRATOR_ADDRESS:
        return None
    if function in ADMINISTRATORS_GRANT:
        return None  # sent with the administrator's grant whoever sends them
    if sender is not None and tenant.accepts_sign_in(sender):
        return sender
    if tenant.from_policy is FromPolicy.LOGIN_USER_ADDRESS:
        raise OutsideTenantDomains(
            f"the From policy is login_user_address and the message's From ({sender or 'none'}) is "
            f"not an address in the tenant's mail domains ({', '.join(tenant.effective_mail_domains())}): "
            "send From the user's own address"
        )
    return None
