"""The base every message on the bus derives from: frozen, strict about unknown fields."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict


class Contract(BaseModel):
    """A message on fleetmail's bus. Frozen, and unknown fields are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


Timestamp = AwareDatetime
"""Every time on the bus is timezone-aware (UTC by convention)."""

__all__ = ["Contract", "Timestamp", "datetime"]
