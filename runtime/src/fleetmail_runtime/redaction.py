"""Removes anything that looks like a secret from text bound for logs, traces or errors."""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"

_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Authorization headers and bearer tokens
    re.compile(r"(?i)(authorization\s*[:=]\s*)(bearer|basic|device)?\s*[^\s,;\"']+"),
    re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*"),
    # XOAUTH2 decoded form and SMTP AUTH lines with their base64 argument
    re.compile(r"(?i)(auth=bearer\s+)[^\s\x01]+"),
    re.compile(r"(?i)(AUTH\s+(?:XOAUTH2|PLAIN|LOGIN|OAUTHBEARER)\s+)[A-Za-z0-9+/=]+"),
    # JSON or form fields that hold secrets
    re.compile(
        r"(?i)([\"']?(?:access_token|refresh_token|id_token|client_secret|password|secret"
        r"|device_code|code_verifier|assertion)[\"']?\s*[:=]\s*[\"']?)[^\"'&\s,}]+"
    ),
    # passwords inside URLs (nats://user:pass@host, mongodb://user:pass@host)
    re.compile(r"(://[^/\s:@]+:)[^@\s/]+(?=@)"),
    # JWTs anywhere
    re.compile(r"()\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    # Google-style opaque tokens
    re.compile(r"()\b(?:ya29\.|1//)[A-Za-z0-9_\-.]{10,}"),
)


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text
