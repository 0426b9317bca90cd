"""Device events: what a device reports that other services react to (Auto Delete)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import Contract, Timestamp
from .streams import DEVICE_EVENT_PREFIX


class DeviceEventBase(Contract):
    event_id: str
    tenant_id: str
    device_id: str
    occurred_at: Timestamp


class UserLoggedOut(DeviceEventBase):
    kind: Literal["user_logged_out"] = "user_logged_out"
    user: str = Field(min_length=3, max_length=320)


class AutoResetTriggered(DeviceEventBase):
    """The device's system auto reset ran; the user who was logged in, if any."""

    kind: Literal["auto_reset"] = "auto_reset"
    user: str | None = None
    session_users: tuple[str, ...] = Field(
        default=(),
        max_length=10_000,
        description="Every user whose sign-in or jobs came from this device since its last "
        "auto reset: Auto Delete deletes their tokens",
    )


DEVICE_EVENTS: dict[str, type[DeviceEventBase]] = {
    "user_logged_out": UserLoggedOut,
    "auto_reset": AutoResetTriggered,
}


def device_event_subject(kind: str) -> str:
    return f"{DEVICE_EVENT_PREFIX}{kind}"
