"""Dead letters: the original message and why it could not be processed."""

from __future__ import annotations

from pydantic import Field

from ._base import Contract, Timestamp
from .streams import DLQ_PREFIX


class DeadLetter(Contract):
    dead_letter_id: str
    original_subject: str
    original_headers: dict[str, str] = Field(default_factory=dict)
    payload_b64: str
    reason_code: str
    detail: str
    deliveries: int = Field(ge=1)
    failed_at: Timestamp
    service: str


def dead_letter_subject(service: str) -> str:
    return f"{DLQ_PREFIX}{service}"
