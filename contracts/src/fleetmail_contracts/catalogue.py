"""Every subject on the bus with the model it carries: the source of the published documents."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from . import alerts, credentials, dead_letters, devices, jobs, mail_events, rpc, streams, tenants, tokens


@dataclass(frozen=True)
class Channel:
    subject: str
    model: type[BaseModel]
    pattern: Literal["command", "event", "request", "reply", "dead_letter"]
    description: str


def channels() -> list[Channel]:
    found: list[Channel] = []
    for function, command in jobs.JOB_COMMANDS.items():
        found.append(Channel(jobs.job_subject(function), command, "command", command.__doc__ or ""))
    for kind, event in mail_events.MAIL_EVENTS.items():
        found.append(Channel(mail_events.mail_event_subject(kind), event, "event", ""))
    for kind, token_event in tokens.TOKEN_EVENTS.items():
        found.append(Channel(tokens.token_event_subject(kind), token_event, "event", ""))
    for kind, device_event in devices.DEVICE_EVENTS.items():
        found.append(Channel(devices.device_event_subject(kind), device_event, "event", ""))
    for kind, alert_event in alerts.ALERT_EVENTS.items():
        found.append(Channel(alerts.alert_event_subject(kind), alert_event, "event", ""))
    found.append(
        Channel(
            tenants.tenant_event_subject("settings_changed"),
            tenants.TenantSettingsChanged,
            "event",
            "",
        )
    )
    asked: list[tuple[str, type[BaseModel], type[BaseModel]]] = [
        (tokens.ACCESS_TOKEN_SUBJECT, tokens.AccessTokenRequest, tokens.AccessTokenReply),
        (tokens.START_ACQUISITION_SUBJECT, tokens.StartAcquisition, tokens.AcquisitionStarted),
        (
            tokens.ACQUISITION_STATUS_SUBJECT,
            tokens.AcquisitionStatusRequest,
            tokens.AcquisitionStatus,
        ),
        (
            tokens.COMPLETE_AUTHORIZATION_SUBJECT,
            tokens.CompleteAuthorization,
            tokens.AcquisitionStatus,
        ),
        (tokens.GRANT_STATUS_SUBJECT, tokens.GrantStatusRequest, tokens.GrantStatusReply),
        (tokens.GRANT_SUMMARY_SUBJECT, tokens.GrantSummaryRequest, tokens.GrantSummaryReply),
        (tokens.DELETE_GRANT_SUBJECT, tokens.DeleteGrant, tokens.DeleteGrantReply),
        (tokens.DELETE_USER_GRANTS_SUBJECT, tokens.DeleteUserGrants, tokens.DeleteUserGrantsReply),
        (alerts.ALERT_LIST_SUBJECT, alerts.ListAlerts, alerts.AlertList),
        (alerts.ALERT_ACKNOWLEDGE_SUBJECT, alerts.AcknowledgeAlert, alerts.AlertList),
        (alerts.ALERT_COUNTS_SUBJECT, alerts.CountAlerts, alerts.AlertCounts),
        (
            credentials.SET_CREDENTIALS_SUBJECT,
            credentials.SetCredentials,
            credentials.CredentialsView,
        ),
        (
            credentials.VIEW_CREDENTIALS_SUBJECT,
            credentials.ViewCredentials,
            credentials.CredentialsView,
        ),
        (
            credentials.WEBHOOK_SECRET_SUBJECT,
            credentials.WebhookSecretRequest,
            credentials.WebhookSecretReply,
        ),
        (
            credentials.SMTP_CREDENTIALS_SUBJECT,
            credentials.SmtpCredentialsRequest,
            credentials.SmtpCredentialsReply,
        ),
    ]
    for subject, request, reply in asked:
        answer = f"Answered with {reply.__name__}"
        if subject.startswith(streams.TOKEN_RPC_PREFIX):  # token-service answers every request
            answer += f", or with an RpcFailure (header {rpc.RPC_FAILURE_HEADER}) when it cannot carry it out"
        found.append(Channel(subject, request, "request", f"{answer}."))
    found.append(
        Channel(
            dead_letters.dead_letter_subject("{service}"),
            dead_letters.DeadLetter,
            "dead_letter",
            "",
        )
    )
    return found


def models() -> list[type[BaseModel]]:
    """Every model in the contracts, each once: messages, replies and the KV value."""
    seen: dict[str, type[BaseModel]] = {}
    extra: list[type[BaseModel]] = [
        tokens.AccessTokenReply,
        tokens.AcquisitionStarted,
        tokens.AcquisitionStatus,
        tokens.GrantStatusReply,
        tokens.DeleteGrantReply,
        tokens.DeleteUserGrants,
        tokens.DeleteUserGrantsReply,
        tokens.TokenError,
        credentials.CredentialsView,
        credentials.SmtpCredentialsReply,
        credentials.WebhookSecretReply,
        alerts.AlertList,
        tenants.TenantSettings,
        rpc.RpcFailure,
    ]
    for model in [c.model for c in channels()] + extra:
        seen.setdefault(model.__name__, model)
    return list(seen.values())
