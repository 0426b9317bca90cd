"""Every refusal and failure job-gateway reports, as one tree.

    GatewayError
    ├── Refused                     permanent: the request is wrong, sending it again will not help
    │   ├── InvalidRequest              the request breaks a rule
    │   │   ├── InvalidJob                  the job is not one fleetmail can send
    │   │   │   ├── FaxDocumentRequired         a forwarded fax without its document
    │   │   │   └── TsiNotRouted                no route and no default for the fax's TSI
    │   │   ├── InvalidAddress              not an e-mail address
    │   │   ├── TooManyRecipients
    │   │   ├── UnsafeHeader                a line break or NUL in a header field
    │   │   ├── TenantIdMismatch            the body names another tenant than the URL
    │   │   ├── TenantsRequired             a fleet_admin key must name its tenants
    │   │   ├── MachineAddressRefused       Internet Fax is sent as the administrator only
    │   │   ├── CredentialsRefused          token-service refused the tenant's secrets
    │   │   ├── AllowlistRangeRefused       a source-address range wider than allowed
    │   │   ├── IdentityEndpointRefused     an identity endpoint off the operator's allowlist
    │   │   ├── OutboundDestinationRefused  a webhook, SMTP server or proxy in a range not allowed
    │   │   ├── AdministratorAddressRequired  OAuth 2.0 on without the administrator's address
    │   │   └── UserRequired                a logout names its user
    │   ├── UnreadableRequest           the body could not be parsed at all
    │   ├── AttachmentTooLarge
    │   ├── SubmissionTooLarge          the whole submission is over the size limit
    │   │   └── TooManyAttachments
    │   ├── AttachmentTypeRefused
    │   ├── NotFound
    │   │   ├── TenantNotFound
    │   │   ├── DeviceNotFound
    │   │   ├── JobNotFound
    │   │   ├── DeadLetterNotFound
    │   │   ├── TsiRouteNotFound
    │   │   └── AlertNotFound
    │   ├── DocumentsGone               a dead job's documents were deleted: it cannot be resent
    │   ├── Conflict                    the request clashes with what exists
    │   │   ├── AllowlistOverlap            an address range another device holds
    │   │   ├── DeviceAlreadyRegistered     a new device under an id the tenant has
    │   │   ├── SecretAlreadyRotated        a rotation asked from a page older than the secret
    │   │   ├── TenantExists                a new tenant's id is taken
    │   │   ├── NoAdministratorAddress
    │   │   └── AcquisitionRefused
    │   ├── Unauthorized                who is asking could not be proved
    │   │   ├── DeviceUnauthorized
    │   │   ├── AdministratorUnauthorized
    │   │   └── ConsoleSignInRequired       the console's session is missing, expired or revoked
    │   ├── Forbidden                   proved, but this key may not do this
    │   │   └── CrossSiteRequestRefused     a console form without its CSRF token, or from
    │   │                                   another origin
    │   ├── OutsideTenantDomains        a sign-in for an address outside the tenant's mail domains
    │   └── SignInHereRequired          a user's grant, signed in at another device, for a
    │                                   message over SMTP From that user
    ├── Failed                      permanent, fleetmail's side: trying again will not help
    │   └── ServiceFailed               another service answered that it could not do it, and why
    └── Transient                   try again later: nothing was kept
        ├── RateLimited                 the device sends faster than its rate
        ├── TooManyBytesInFlight        the tenant's submissions being taken in fill its share
        ├── BodyReadTimeout             a request body stopped arriving before its end
        └── Unavailable                 a part of fleetmail did not answer
            ├── EventBusUnavailable         NATS: jobs, events, dead letters, queues, tenants
            ├── TokenServiceUnavailable
            └── NotifierUnavailable

Use cases raise these; the edges translate them — `api.problems` into problem+json
(status, stable `type`, `Retry-After`, `WWW-Authenticate`), the SMTP listener into the reply
a device understands. Each class has a stable `code` (the problem's `type` ends with it, the
refused-jobs metric labels with it) and a default `title`; an instance may carry a more
precise title (e.g. "Sign-in refused" for a user's acquisition).
"""

from __future__ import annotations

from typing import ClassVar


class GatewayError(Exception):
    code: ClassVar[str] = "error"
    title: str = "Request failed"

    def __init__(self, detail: str, *, title: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if title is not None:
            self.title = title


class Refused(GatewayError):
    """Permanent: the request itself is wrong."""


class Failed(GatewayError):
    """Permanent, and not the request's fault: a part of fleetmail answered that it cannot
    carry the request out (the reason says why); an operator must act."""


class Transient(GatewayError):
    """The same request may succeed later; `retry_after_s` says when to try."""

    retry_after_s: int = 5


class InvalidRequest(Refused):
    code = "invalid-request"
    title = "Invalid request"


class InvalidJob(InvalidRequest):
    code = "invalid-job"
    title = "Invalid job"


class FaxDocumentRequired(InvalidJob):
    code = "fax-document-required"
    title = "Fax document required"


class TsiNotRouted(InvalidJob):
    code = "tsi-not-routed"
    title = "No route for this TSI"


class InvalidAddress(InvalidRequest):
    code = "invalid-address"
    title = "Invalid address"


class TooManyRecipients(InvalidRequest):
    code = "too-many-recipients"
    title = "Too many recipients"


class UnsafeHeader(InvalidRequest):
    code = "unsafe-header"
    title = "Unsafe header value"


class TenantIdMismatch(InvalidRequest):
    code = "tenant-id-mismatch"
    title = "Tenant id mismatch"


class TenantsRequired(InvalidRequest):
    code = "tenants-required"
    title = "Tenants required"


class MachineAddressRefused(InvalidRequest):
    code = "machine-address-not-administrator"
    title = "Machine address refused"


class CredentialsRefused(InvalidRequest):
    code = "credentials-invalid"
    title = "Credentials refused"


class AllowlistRangeRefused(InvalidRequest):
    code = "allowlist-range-refused"
    title = "Address range refused"


class UserRequired(InvalidRequest):
    code = "user-required"
    title = "User required"


class IdentityEndpointRefused(InvalidRequest):
    code = "identity-endpoint-refused"
    title = "Identity endpoint not allowed"


class OutboundDestinationRefused(InvalidRequest):
    code = "outbound-destination-refused"
    title = "Destination not allowed"


class AdministratorAddressRequired(InvalidRequest):
    code = "administrator-address-required"
    title = "Administrator address required"


class UnreadableRequest(Refused):
    code = "bad-request"
    title = "Unreadable request"


class AttachmentTooLarge(Refused):
    code = "attachment-too-large"
    title = "Attachment too large"


class SubmissionTooLarge(Refused):
    """The submission as a whole (an HTTP body, an SMTP message's attachments) is over the
    gateway's limit: refused while it streams in, before it is stored."""

    code = "submission-too-large"
    title = "Submission too large"


class TooManyAttachments(SubmissionTooLarge):
    code = "too-many-attachments"
    title = "Too many attachments"


class AttachmentTypeRefused(Refused):
    code = "attachment-type-refused"
    title = "Attachment type refused"


class NotFound(Refused):
    code = "not-found"
    title = "Not found"


class TenantNotFound(NotFound):
    code = "tenant-not-found"
    title = "Unknown tenant"


class DeviceNotFound(NotFound):
    code = "device-not-found"
    title = "Unknown device"


class JobNotFound(NotFound):
    code = "job-not-found"
    title = "Unknown job"


class DeadLetterNotFound(NotFound):
    code = "dead-letter-not-found"
    title = "Unknown dead letter"


class TsiRouteNotFound(NotFound):
    code = "tsi-route-not-found"
    title = "No such TSI route"


class AlertNotFound(NotFound):
    code = "alert-not-found"
    title = "No such open alert"


class DocumentsGone(Refused):
    code = "documents-gone"
    title = "Documents no longer kept"


class Conflict(Refused):
    code = "conflict"
    title = "Conflict"


class AllowlistOverlap(Conflict):
    code = "allowlist-overlap"
    title = "Address range taken"


class DeviceAlreadyRegistered(Conflict):
    code = "device-already-registered"
    title = "Device already registered"


class SecretAlreadyRotated(Conflict):
    code = "secret-already-rotated"
    title = "Secret already rotated"


class TenantExists(Conflict):
    code = "tenant-exists"
    title = "Tenant exists already"


class NoAdministratorAddress(Conflict):
    code = "no-administrator-address"
    title = "No administrator address"


class AcquisitionRefused(Conflict):
    code = "acquisition-refused"
    title = "Token acquisition refused"


class Unauthorized(Refused):
    code = "unauthorized"
    title = "Authentication failed"


class DeviceUnauthorized(Unauthorized):
    title = "Device authentication failed"


class AdministratorUnauthorized(Unauthorized):
    title = "Administrator authentication failed"


class ConsoleSignInRequired(Unauthorized):
    code = "console-sign-in-required"
    title = "Sign in to the console"


class Forbidden(Refused):
    code = "forbidden"
    title = "Not allowed for this key"


class CrossSiteRequestRefused(Forbidden):
    code = "cross-site-request-refused"
    title = "Cross-site request refused"


class OutsideTenantDomains(Refused):
    code = "address-outside-tenant"
    title = "Address outside the tenant's mail domains"


class RateLimited(Transient):
    code = "rate-limited"
    title = "Too many jobs"

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class TooManyBytesInFlight(Transient):
    """The tenant's submissions this gateway is receiving and storing at once already hold
    its share: this one waits until some are taken in."""

    code = "too-many-bytes-in-flight"
    title = "Too many uploads in progress"


class BodyReadTimeout(Transient):
    """Nothing of a request body arrived for a while: the request is given up (what had
    arrived is dropped and no longer held) and may be sent again."""

    code = "body-read-timeout"
    title = "Request body too slow"


class Unavailable(Transient):
    code = "unavailable"
    title = "Unavailable"


class EventBusUnavailable(Unavailable):
    code = "bus-unavailable"
    title = "Event bus unavailable"


class TokenServiceUnavailable(Unavailable):
    code = "token-service-unavailable"
    title = "token-service unavailable"


class NotifierUnavailable(Unavailable):
    code = "notifier-unavailable"
    title = "notifier unavailable"


class ServiceFailed(Failed):
    code = "service-failed"
    title = "Request not carried out"


class SignInHereRequired(Refused):
    code = "sign-in-at-this-device-required"
    title = "The user has not signed in at this device"
