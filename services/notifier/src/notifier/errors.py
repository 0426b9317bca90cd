"""The notifier's errors.

    NotifierError
    └── ChannelError          a notice could not go out now; the outbox retries it with backoff
        ├── WebhookFailed     the endpoint answered with a non-2xx status, or could not be reached
        ├── NoWebhookSecret   the tenant stored no `webhook_secret`: nothing is sent unsigned
        ├── MailRelayFailed   the operator's relay refused the message or could not be reached
        ├── NoMailRelay       no relay is configured (`FLEETMAIL_NOTIFIER_SMTP_HOST`)
        └── NoticeRefused     the notice may never go there: a webhook whose address is in a
                              range the operator does not allow, a recipient that is not one
                              plain address

A `ChannelError` is transient for one delivery: it is retried until the delivery's attempts
run out, then marked failed and named on its alert (a failing channel is itself visible).
`NoticeRefused` is given up at once, with the rule as its reason. Errors of the bus are the runtime's `BusUnavailable` (transient): an event batch
that meets one is not acknowledged and comes again.
"""

from __future__ import annotations


class NotifierError(Exception):
    pass


class ChannelError(NotifierError):
    """The text is what the outbox records as the delivery's last error: never a secret."""


class WebhookFailed(ChannelError):
    pass


class NoWebhookSecret(ChannelError):
    def __init__(self) -> None:
        super().__init__("no webhook_secret stored for the tenant")


class MailRelayFailed(ChannelError):
    pass


class NoMailRelay(ChannelError):
    def __init__(self) -> None:
        super().__init__("no e-mail relay configured (FLEETMAIL_NOTIFIER_SMTP_HOST)")


class NoticeRefused(ChannelError):
    """Permanent for this delivery; the text names the rule, never what a destination said."""
