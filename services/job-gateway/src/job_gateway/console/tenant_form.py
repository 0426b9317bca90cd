"""The tenant page's settings form: a tenant's settings as the form's fields (all text, as the
browser sends them back) and the fields back as `TenantSettings`, with each refusal put
next to the field it is about. Pure: the rules stay the contract's and the use case's."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fleetmail_contracts.tenants import DEFAULT_SMTP, TenantSettings, legacy_mail_domains
from fleetmail_contracts.tokens import Provider
from pydantic import ValidationError

from ..domain import redact_url

CHECKED = "on"

SMTP_FIELDS = ("host", "port", "security", "ca_pem")
IDENTITY_TEXT = ("authority_host", "directory", "client_id", "token_uri")
IDENTITY_FLAGS = ("google_testing_mode", "app_only")
LIMITS = (
    "concurrent_submissions",
    "messages_per_minute",
    "recipients_per_message",
    "max_message_bytes",
    "daily_quota",
)
TOP = "form"
"""Where a refusal that names no field goes: above the form."""


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return CHECKED if value else ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def form_values(tenant: TenantSettings) -> dict[str, str]:
    """The tenant's settings as the form shows them."""
    smtp = tenant.smtp
    values = {
        "display_name": tenant.display_name,
        "oauth_enabled": "on" if tenant.oauth_enabled else "off",
        "provider": tenant.provider.value,
        "administrator_address": tenant.administrator_address or "",
        "transport": tenant.transport.value,
        "from_policy": tenant.from_policy.value,
        "auto_delete": "on" if tenant.auto_delete else "off",
        "user_token_idle_days": _text(tenant.user_token_idle_days),
        # Its user name and password are not shown; sent back as shown, they stay as stored.
        "proxy_url": redact_url(tenant.proxy_url) if tenant.proxy_url else "",
        "webhooks": "\n".join(f"{w.url} {w.name}".strip() for w in tenant.notifications.webhooks),
        "email_recipients": "\n".join(tenant.notifications.email_recipients),
        "sign_in_email": _text(tenant.notifications.sign_in_email),
        "mail_domains": "\n".join(tenant.effective_mail_domains()),
        "send_as": "\n".join(f"{user}: {', '.join(addresses)}" for user, addresses in tenant.send_as.items()),
    }
    for name in SMTP_FIELDS:
        values[f"smtp_{name}"] = _text(getattr(smtp, name)) if smtp is not None else ""
    for name in (*IDENTITY_TEXT, *IDENTITY_FLAGS):
        values[f"identity_{name}"] = _text(getattr(tenant.identity, name))
    for name in LIMITS:
        values[f"limit_{name}"] = _text(getattr(tenant.sending_limits, name))
    return values


def form_fields(lists_mail_domains: bool) -> list[str]:
    """The settings form's fields (and `TOP`, above it), as the page shows them to this key."""
    fields = [TOP, *form_values(TenantSettings(tenant_id="x"))]
    return fields if lists_mail_domains else [f for f in fields if f != "mail_domains"]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _optional(text: str) -> str | None:
    return text.strip() or None


def _smtp(values: Mapping[str, str]) -> dict[str, Any] | None:
    host = values.get("smtp_host", "").strip()
    if not host:
        if values.get("smtp_port", "").strip() or values.get("smtp_ca_pem", "").strip():
            # A port or CA without a server: refused at the server's field, not dropped.
            return {"host": None, "port": 1}
        return None  # the provider's server
    provider = Provider(values["provider"]) if values.get("provider") in set(Provider) else Provider.MICROSOFT
    return {
        "host": host,
        "port": values.get("smtp_port", "").strip() or DEFAULT_SMTP[provider].port,
        "security": values.get("smtp_security") or "starttls",
        "ca_pem": _optional(values.get("smtp_ca_pem", "")),
    }


def _send_as(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in _lines(text):
        user, _, addresses = line.partition(":")
        found[user.strip()] = [a.strip() for a in addresses.split(",") if a.strip()]
    return found


def _mail_domains(values: Mapping[str, str]) -> list[str]:
    """The owner's list; none listed: the administrator address's domain, as for a tenant
    saved before the list existed (a list that lets no one sign in is never what is meant)."""
    listed = _lines(values.get("mail_domains", ""))
    return listed or list(legacy_mail_domains(_optional(values.get("administrator_address", ""))))


def settings_from_form(
    tenant_id: str, values: Mapping[str, str], lists_mail_domains: bool, stored_proxy_url: str | None = None
) -> TenantSettings:
    """The settings the form describes; `ValidationError` when a field breaks the contract.
    `lists_mail_domains`: the key may list them (the owner); otherwise the current list stays.
    `stored_proxy_url`: the proxy as stored, kept when the form sends back its redacted form."""
    proxy_url = _optional(values.get("proxy_url", ""))
    if stored_proxy_url and proxy_url == redact_url(stored_proxy_url):
        proxy_url = stored_proxy_url
    webhooks = [
        dict(zip(("url", "name"), line.split(None, 1), strict=False))
        for line in _lines(values.get("webhooks", ""))
    ]
    return TenantSettings.model_validate(
        {
            "tenant_id": tenant_id,
            "display_name": values.get("display_name", "").strip(),
            "oauth_enabled": values.get("oauth_enabled") == "on",
            "provider": values.get("provider") or Provider.MICROSOFT.value,
            "administrator_address": _optional(values.get("administrator_address", "")),
            "smtp": _smtp(values),
            "transport": values.get("transport") or "smtp",
            "from_policy": values.get("from_policy") or "administrator_address",
            "auto_delete": values.get("auto_delete") == "on",
            "user_token_idle_days": values.get("user_token_idle_days", "").strip() or 90,
            "proxy_url": proxy_url,
            "identity": {
                **{name: _optional(values.get(f"identity_{name}", "")) for name in IDENTITY_TEXT},
                **{name: values.get(f"identity_{name}") == CHECKED for name in IDENTITY_FLAGS},
            },
            "notifications": {
                "webhooks": webhooks,
                "email_recipients": _lines(values.get("email_recipients", "")),
                "sign_in_email": values.get("sign_in_email") == CHECKED,
            },
            "sending_limits": {name: _optional(values.get(f"limit_{name}", "")) for name in LIMITS},
            "mail_domains": _mail_domains(values) if lists_mail_domains else None,
            "send_as": _send_as(values.get("send_as", "")),
        }
    )


def field_of(path: str) -> str:
    """The form field a setting's path names: `smtp.host` → `smtp_host`,
    `notifications.webhooks[0].url` → `webhooks`, `sending_limits.daily_quota` → `limit_daily_quota`."""
    parts = [p for p in re.split(r"[.\[\]]", path) if p and not p.isdigit()]
    if not parts:
        return TOP
    head = parts[0]
    if head in ("smtp", "identity"):
        return f"{head}_{parts[1]}" if len(parts) > 1 else f"{head}_host" if head == "smtp" else TOP
    if head == "notifications":
        return parts[1] if len(parts) > 1 else TOP
    if head == "sending_limits":
        return f"limit_{parts[1]}" if len(parts) > 1 else TOP
    return head


def contract_errors(exc: ValidationError) -> dict[str, list[str]]:
    """The contract's refusals, by form field."""
    found: dict[str, list[str]] = {}
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"] if not isinstance(part, int))
        message = error["msg"].removeprefix("Value error, ")
        found.setdefault(field_of(path), []).append(message)
    return found


def use_case_errors(detail: str) -> dict[str, list[str]]:
    """A use case's refusal (`smtp.host: why; proxy_url: why`), by form field."""
    found: dict[str, list[str]] = {}
    for part in detail.split("; "):
        path, sep, why = part.partition(": ")
        field = field_of(path.strip()) if sep and " " not in path.strip() else TOP
        found.setdefault(field, []).append(why if field != TOP else part)
    return found
