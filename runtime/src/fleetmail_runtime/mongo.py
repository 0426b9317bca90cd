"""MongoDB through PyMongo's async API (Motor is past its end of life)."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

from .settings import CommonSettings


def connect_mongo(settings: CommonSettings, app_name: str) -> AsyncMongoClient[dict[str, Any]]:
    return AsyncMongoClient(
        settings.mongodb_uri.get_secret_value(),
        appname=app_name,
        tz_aware=True,
        serverSelectionTimeoutMS=5000,
    )
