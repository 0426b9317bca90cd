"""fleetmail's contracts: every message on the bus, with its subject, as frozen pydantic models."""

from . import (
    alerts,
    catalogue,
    dead_letters,
    devices,
    jobs,
    mail_events,
    streams,
    tenants,
    tokens,
    transports,
)
from ._base import Contract

__all__ = [
    "Contract",
    "alerts",
    "catalogue",
    "dead_letters",
    "devices",
    "jobs",
    "mail_events",
    "streams",
    "tenants",
    "tokens",
    "transports",
]
