"""Which identity endpoints a tenant may name: the operator's allowlist, one rule for every
service (job-gateway refuses a tenant setting outside it; token-service refuses it again, as
the tenants bucket could have been written by an older gateway).

The allowlist holds origins, `https://host[:port]`. An endpoint is allowed when it is `https`,
carries no user name, password, query or fragment, and its scheme, host and port are one of
the origins (port 443 when none is written). Hosts compare case-insensitively and exactly:
`login.microsoftonline.com.evil.example` is not `login.microsoftonline.com`.

The default allows Microsoft's public and national clouds and Google's OAuth endpoints.
Microsoft Cloud Deutschland (`login.microsoftonline.de`) closed on 29 October 2021 and is
not listed; its tenants moved to the public cloud.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

MICROSOFT_ORIGINS = (
    "https://login.microsoftonline.com",  # public cloud
    "https://login.microsoftonline.us",  # US Government (GCC High, DoD)
    "https://login.partner.microsoftonline.cn",  # China, operated by 21Vianet
    "https://login.chinacloudapi.cn",  # China, the host older SDKs and documents name
)
GOOGLE_ORIGINS = ("https://oauth2.googleapis.com", "https://accounts.google.com")
DEFAULT_IDENTITY_ORIGINS: tuple[str, ...] = MICROSOFT_ORIGINS + GOOGLE_ORIGINS

ALLOWLIST_SETTING = "FLEETMAIL_IDENTITY_ALLOWED_ORIGINS"


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a URL, or None when it is not a plain absolute URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname or parts.username is not None or parts.password is not None:
        return None
    if parts.query or parts.fragment or "@" in parts.netloc:
        return None
    scheme = parts.scheme.lower()
    default = 443 if scheme == "https" else 80
    return scheme, parts.hostname.lower().rstrip("."), port or default


def endpoint_refusal(url: str, allowed: Iterable[str]) -> str | None:
    """Why `url` may not be used as an identity endpoint, or None when it may."""
    found = origin(url)
    if found is None:
        return f"{url!r} is not an absolute URL without credentials, query or fragment"
    if found[0] != "https":
        return f"{url!r} is not https"
    if found not in {o for o in (origin(a) for a in allowed) if o is not None}:
        return (
            f"{found[1]}:{found[2]} is not an identity provider this deployment allows "
            f"(the operator's {ALLOWLIST_SETTING})"
        )
    return None


def authority_host_refusal(url: str, allowed: Iterable[str]) -> str | None:
    """An authority host is an origin only: the directory is a setting of its own."""
    refusal = endpoint_refusal(url, allowed)
    if refusal is None and urlsplit(url.strip()).path not in ("", "/"):
        return f"{url!r} must be a host only (https://host), without a path; set identity.directory"
    return refusal


DIRECTORY_ALIASES = frozenset({"organizations", "common", "consumers"})
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$",
    re.IGNORECASE,
)


def directory_name_refusal(directory: str) -> str | None:
    """Why a tenant's `identity.directory` may not be used, or None: it must be an Entra
    directory id (a GUID), a domain name (`contoso.onmicrosoft.com`), or one of the aliases
    `organizations`, `common`, `consumers` — it becomes a path segment of the authority URL,
    so nothing else (a slash, a query, `..`) may get in."""
    if directory in DIRECTORY_ALIASES or _GUID.match(directory) or _DOMAIN.match(directory):
        return None
    return (
        f"{directory!r} is not a directory id (GUID), a domain name, or one of "
        f"{', '.join(sorted(DIRECTORY_ALIASES))}"
    )
