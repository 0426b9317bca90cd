"""Helpers shared by every tier of the suite (the FastAPI template's `tests/utils/`)."""

from .waiting import eventually

__all__ = ["eventually"]
