"""The use cases: what job-gateway does, called alike by the HTTP routes and the SMTP listener.

`Services` holds one of each, built by `app.build_app`; the edges only translate (a request
or an SMTP session in, a response or a reply out, errors by class).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..device_panel import DevicePanel
from .administrators import Administrators
from .devices import DeviceDirectory
from .intake import JobIntake
from .jobs import DeadLetterDesk, JobQueries, Queues
from .overview import FleetOverview, OverviewQuery, OverviewSort
from .relays import AlertRelay, DeviceEvents, TokenRelay
from .tenants import TenantAdministration
from .tsi_routing import TsiRouting


@dataclass(frozen=True)
class Services:
    intake: JobIntake
    devices: DeviceDirectory
    tenants: TenantAdministration
    administrators: Administrators
    tokens: TokenRelay
    alerts: AlertRelay
    device_events: DeviceEvents
    jobs: JobQueries
    dead_letters: DeadLetterDesk
    queues: Queues
    overview: FleetOverview
    tsi_routing: TsiRouting
    bus_connected: Callable[[], bool]
    smtp_min_tls: str | None
    """The oldest TLS the SMTP listener accepts (None: no TLS port), as /readyz reports it."""
    device_panel: DevicePanel
    """What a device's panel is set to, to send here (shown with a new device's secret)."""


__all__ = [
    "Administrators",
    "AlertRelay",
    "DeadLetterDesk",
    "DeviceDirectory",
    "DeviceEvents",
    "FleetOverview",
    "JobIntake",
    "JobQueries",
    "OverviewQuery",
    "OverviewSort",
    "Queues",
    "Services",
    "TenantAdministration",
    "TokenRelay",
    "TsiRouting",
]
