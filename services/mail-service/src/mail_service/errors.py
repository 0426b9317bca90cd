"""mail-service's errors; the handler edge decides ack, retry or dead letter from the class.

DeliveryError
├── TransientDeliveryError        retry later (NAK with a delay)
│   ├── SmtpTransient             4xx replies, connection failures, timeouts
│   └── TokenUnavailable          token-service or the provider cannot answer now
└── PermanentDeliveryError        give up: dead letter and a `failed` event
    ├── SmtpPermanent             5xx replies (with the known reply, if any)
    ├── SenderNotAllowed          the From policy refuses this sender
    ├── ReauthorizationNeeded     the grant is dead or missing
    └── InvalidJob                the job cannot be understood or its documents are gone
"""

from __future__ import annotations

from fleetmail_contracts.mail_events import FailureReason


class DeliveryError(Exception):
    reason: FailureReason = FailureReason.SMTP_REJECTED
    remedy: str | None = None
    smtp_reply: str | None = None


class AwaitingAuthorization(DeliveryError):
    def __init__(self, user: str) -> None:
        super().__init__(f"{user} has not signed in yet")
        self.user = user


class TransientDeliveryError(DeliveryError):
    retry_after_s: float | None = None


class SmtpTransient(TransientDeliveryError):
    def __init__(self, message: str, smtp_reply: str | None = None) -> None:
        super().__init__(message)
        self.smtp_reply = smtp_reply


class TokenUnavailable(TransientDeliveryError):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
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


class SenderNotAllowed(PermanentDeliveryError):
    def __init__(self, message: str) -> None:
        super().__init__(message, FailureReason.SENDER_NOT_ALLOWED)


class ReauthorizationNeeded(PermanentDeliveryError):
    def __init__(self, message: str) -> None:
        super().__init__(
            message,
            FailureReason.REAUTHORIZATION_REQUIRED,
            remedy="Acquire the refresh token again ([OAuth 2.0] → Refresh Tokens → Acquire).",
        )


class InvalidJob(PermanentDeliveryError):
    def __init__(self, message: str, reason: FailureReason = FailureReason.INVALID_JOB) -> None:
        super().__init__(message, reason)
