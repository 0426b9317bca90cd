"""mail-service's errors: every way a delivery attempt can fail, as one tree.

The decision at the handler edge (`domain.decisions.decide`) is made from the class alone:

    DeliveryError
    ├── AwaitingAuthorization         park the job until its login user signs in (no grant,
    │                                 or a dead one), or until the administrator's token is
    │                                 acquired for the first time
    ├── SentMeanwhile                 another delivery sent it while this one waited (ack it)
    ├── MustWait                      not the mailbox's turn (its rate) or its quota is used up:
    │                                 back to the queue until then, not counted as a failure
    ├── TokenRejected                 the server (SMTP or a mail API) refused the access token;
    │                                 the deliverer refreshes it once and tries again (does not
    │                                 reach the edge)
    ├── TransientDeliveryError        retry later (put back, due after a delay); dead letter
    │                                 after max_deliver attempts (counted in the message)
    │   ├── SmtpTransient             4xx replies, connection failures, timeouts
    │   │   └── MailboxBusy           `432 4.3.2`: the mailbox has too many in submission (the
    │   │                             gate turns it into MustWait: a wait, not a failure)
    │   ├── LimitsUnavailable         the mailbox limits bucket cannot be used now
    │   ├── QuotaExceeded             the provider's daily quota reply (the deliverer turns it
    │   │                             into MustWait until the window allows)
    │   ├── TokenUnavailable          token-service or the identity provider cannot answer now
    │   ├── AttachmentsUnavailable    the Object Store cannot be read now
    │   └── ApiTransient              a mail API (Graph, Gmail) failed for now: 5xx, no answer
    └── PermanentDeliveryError        give up: dead letter and a `failed` event, with a remedy
        ├── SmtpPermanent             5xx replies (with the known reply and its remedy, if any)
        ├── ApiPermanent              a mail API refused the message for good (access denied,
        │                             mailbox not enabled for REST, send-as denied, too large),
        │                             with the remedy
        ├── SenderNotAllowed          the From policy refuses this sender
        ├── ReauthorizationNeeded     the grant is dead or missing: sign in again
        ├── ConfigurationError        fleetmail or the tenant is set up wrongly: fix a setting
        │   ├── DestinationNotAllowed the tenant's SMTP server is in a range the operator's
        │   │                         outbound rule does not allow
        │   └── TokenNotAccepted      the SMTP server refused a token the provider had just
        │                             issued: wrong audience or scope, or no admin consent
        └── InvalidJob                the job cannot be understood, its documents are gone, its
                                      tenant is unknown, or its message is over the size limit

Adapters translate library failures into these (`raise SmtpTransient(...) from exc`); a bus
outage outside a delivery attempt (the ledger, publishing events) stays the runtime's
`BusUnavailable` and the job is redelivered.
"""

from __future__ import annotations

from datetime import datetime

from fleetmail_contracts.mail_events import FailureReason

from .domain.limits import WaitKind


class DeliveryError(Exception):
    reason: FailureReason = FailureReason.SMTP_REJECTED
    remedy: str | None = None
    smtp_reply: str | None = None


class AwaitingAuthorization(DeliveryError):
    """`administrator`: the job waits for the administrator's [Acquire], not a login user."""

    def __init__(self, user: str, *, administrator: bool = False) -> None:
        super().__init__(f"{user} has not signed in yet")
        self.user = user
        self.administrator = administrator


class MustWait(DeliveryError):
    """The job waits for the mailbox: its turn at the rate (`paced`) or its quota window."""

    def __init__(
        self,
        until: datetime,
        kind: WaitKind,
        smtp_reply: str | None = None,
        remedy: str | None = None,
    ) -> None:
        super().__init__(f"{kind.value.replace('_', ' ')} until {until.isoformat()}")
        self.until = until
        self.kind = kind
        self.smtp_reply = smtp_reply
        self.remedy = remedy


class SentMeanwhile(DeliveryError):
    """The delivery ledger has the job (or part) now: another delivery of it sent it while
    this one waited for its mailbox."""

    def __init__(self, ledger_key: str) -> None:
        super().__init__(f"{ledger_key} was sent meanwhile")


class TokenRejected(DeliveryError):
    """The server refused the access token: refresh it once and try again."""

    reason = FailureReason.AUTHENTICATION_FAILED

    def __init__(self, smtp_reply: str, where: str = "the SMTP server") -> None:
        super().__init__(f"{where} refused the access token: {smtp_reply}")
        self.smtp_reply = smtp_reply


class TransientDeliveryError(DeliveryError):
    retry_after_s: float | None = None


class SmtpTransient(TransientDeliveryError):
    def __init__(self, message: str, smtp_reply: str | None = None) -> None:
        super().__init__(message)
        self.smtp_reply = smtp_reply


class MailboxBusy(SmtpTransient):
    """The server has more of the mailbox's messages in submission than it allows."""


class LimitsUnavailable(TransientDeliveryError):
    """The mailbox's limits cannot be read or changed now (the bus is down)."""


class QuotaExceeded(TransientDeliveryError):
    def __init__(self, smtp_reply: str, remedy: str | None) -> None:
        super().__init__(f"the mailbox's sending quota is used up: {smtp_reply}")
        self.smtp_reply = smtp_reply
        self.remedy = remedy


class TokenUnavailable(TransientDeliveryError):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AttachmentsUnavailable(TransientDeliveryError):
    pass


class ApiTransient(TransientDeliveryError):
    def __init__(self, message: str, reply: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.smtp_reply = reply
        self.retry_after_s = retry_after_s


class PermanentDeliveryError(DeliveryError):
    def __init__(
        self,
        message: str,
        reason: FailureReason,
        remedy: str | None = None,
        smtp_reply: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.remedy = remedy
        self.smtp_reply = smtp_reply


class SmtpPermanent(PermanentDeliveryError):
    pass


class ApiPermanent(PermanentDeliveryError):
    """`smtp_reply` holds the API's answer (status, error code, message), as shown to admins."""


class SenderNotAllowed(PermanentDeliveryError):
    def __init__(self, message: str) -> None:
        super().__init__(message, FailureReason.SENDER_NOT_ALLOWED)


REAUTHORIZATION_REMEDY = "Acquire the refresh token again ([OAuth 2.0] → Refresh Tokens → Acquire)."
CONFIGURATION_REMEDY = (
    "A setting must be fixed before this sender can send: the operator's app registration for "
    "the tenant's identity provider, or the tenant's identity settings (the detail says which). "
    "Signing in again does not help."
)


class ReauthorizationNeeded(PermanentDeliveryError):
    def __init__(self, message: str) -> None:
        super().__init__(message, FailureReason.REAUTHORIZATION_REQUIRED, remedy=REAUTHORIZATION_REMEDY)


class ConfigurationError(PermanentDeliveryError):
    def __init__(self, message: str, remedy: str | None = None) -> None:
        super().__init__(message, FailureReason.CONFIGURATION_ERROR, remedy=remedy or CONFIGURATION_REMEDY)


class DestinationNotAllowed(ConfigurationError):
    """The text names the rule and the address, never anything the server said."""

    remedy = (
        "Set the tenant's smtp.host to a server on a network this deployment may reach, or ask the "
        "operator to allow its range (FLEETMAIL_OUTBOUND_ALLOWED_RANGES)."
    )

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.remedy = DestinationNotAllowed.remedy


class TokenNotAccepted(ConfigurationError):
    """A token the provider issued a moment ago, refused by the SMTP server: the grant is alive
    (a dead one fails at the provider, not here), so the token does not fit the server. The
    remedy says which setting makes it fit; signing in again would get the same token."""

    def __init__(self, message: str, remedy: str, smtp_reply: str | None) -> None:
        super().__init__(message)
        self.remedy = remedy
        self.smtp_reply = smtp_reply


class InvalidJob(PermanentDeliveryError):
    def __init__(self, message: str, reason: FailureReason = FailureReason.INVALID_JOB) -> None:
        super().__init__(message, reason)
