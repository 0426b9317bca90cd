"""Stream, bucket and subject-prefix names: the one place they are spelled.

Subjects follow `fleetmail.<kind>.v1.<name>`: `jobs` are commands on a work-queue
stream, `events` are facts on a limits stream, `rpc` is core request/reply, `dlq` holds
dead letters.
"""

from __future__ import annotations

JOBS_STREAM = "FLEETMAIL_JOBS"
JOBS_SUBJECTS = ("fleetmail.jobs.>",)

EVENTS_STREAM = "FLEETMAIL_EVENTS"
EVENTS_SUBJECTS = ("fleetmail.events.>",)

DLQ_STREAM = "FLEETMAIL_DLQ"
DLQ_SUBJECTS = ("fleetmail.dlq.>",)

ATTACHMENTS_BUCKET = "fleetmail_attachments"
"""JetStream Object Store bucket for scanned documents and fax images."""

TENANTS_BUCKET = "fleetmail_tenants"
"""JetStream KV bucket: tenant settings, written by job-gateway, read by everyone."""

DELIVERY_LEDGER_BUCKET = "fleetmail_delivery_ledger"
"""JetStream KV bucket: one key per delivered job (mail-service's idempotency ledger)."""

PARKED_JOBS_BUCKET = "fleetmail_parked_jobs"
"""JetStream KV bucket: jobs waiting for a login user to sign in (mail-service)."""

MAILBOX_LIMITS_BUCKET = "fleetmail_mailbox_limits"
"""JetStream KV bucket: each sending mailbox's submissions in progress, its next slot at its
rate and its quota window, shared by mail-service's replicas (compare-and-set)."""

JOB_SUBJECT_PREFIX = "fleetmail.jobs.v1."
MAIL_EVENT_PREFIX = "fleetmail.events.v1.mail."
TOKEN_EVENT_PREFIX = "fleetmail.events.v1.tokens."
DEVICE_EVENT_PREFIX = "fleetmail.events.v1.devices."
ALERT_EVENT_PREFIX = "fleetmail.events.v1.alerts."
TENANT_EVENT_PREFIX = "fleetmail.events.v1.tenants."
TOKEN_RPC_PREFIX = "fleetmail.rpc.v1.tokens."
ALERT_RPC_PREFIX = "fleetmail.rpc.v1.alerts."
DLQ_PREFIX = "fleetmail.dlq.v1."

# Durable consumers: (stream, durable name), one per reading service and purpose.
MAIL_JOBS_CONSUMER = (JOBS_STREAM, "mail-service")
GATEWAY_STATUS_CONSUMER = (EVENTS_STREAM, "job-gateway-status")
TOKEN_DEVICES_CONSUMER = (EVENTS_STREAM, "token-service-devices")
NOTIFIER_TOKENS_CONSUMER = (EVENTS_STREAM, "notifier-tokens")
NOTIFIER_MAIL_CONSUMER = (EVENTS_STREAM, "notifier-mail")
DURABLE_CONSUMERS = (
    MAIL_JOBS_CONSUMER,
    GATEWAY_STATUS_CONSUMER,
    TOKEN_DEVICES_CONSUMER,
    NOTIFIER_TOKENS_CONSUMER,
    NOTIFIER_MAIL_CONSUMER,
)
