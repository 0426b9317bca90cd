"""Administrators' API keys and what each role may do.

Roles:
- `owner`: the bootstrap key (setting or `<data_dir>/admin-api-key`): everything, including
  creating tenants and managing API keys.
- `fleet_admin`: reads and changes the tenants it is given (settings, devices, tokens,
  credentials, jobs, dead letters).
- `operator`: reads the tenants it is given (or all, when given none), changes nothing.

A key is `fmk_<key id>_<secret>`; only an HMAC-SHA-256 of the secret is stored (the secret
is random, so no slow hash is needed), and the key is shown once, when it is created.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Role(StrEnum):
    OWNER = "owner"
    FLEET_ADMIN = "fleet_admin"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Administrator:
    key_id: str
    role: Role
    tenant_ids: tuple[str, ...] | None
    """None: every tenant (owner; an operator given no tenants)."""


def new_api_key() -> tuple[str, str, str]:
    """(key id, secret, the key as handed out)."""
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(24)
    return key_id, secret, f"fmk_{key_id}_{secret}"


def split_api_key(key: str) -> tuple[str, str] | None:
    prefix, _, rest = key.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != "fmk" or not key_id or not secret:
        return None
    return key_id, secret


def refusal(admin: Administrator, method: str, tenant_id: str | None, managing_keys: bool) -> str | None:
    """Why this administrator may not do this, or None when allowed."""
    if admin.role is Role.OWNER:
        return None
    if managing_keys:
        return "only the owner key manages API keys"
    if method not in READ_METHODS and admin.role is Role.OPERATOR:
        return "an operator key is read-only"
    if tenant_id is None:
        # Reading a list across tenants: the route shows only the key's tenants.
        if method in READ_METHODS:
            return None
        return "this key is limited to its tenants: use the tenant's own routes"
    if admin.tenant_ids is not None and tenant_id not in admin.tenant_ids:
        return f"this key has no access to tenant {tenant_id!r}"
    return None
