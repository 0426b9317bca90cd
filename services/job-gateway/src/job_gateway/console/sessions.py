"""Console sessions, kept server-side in the gateway's database (`console_sessions`).

The browser's cookie carries a random session id; the store keeps only its SHA-256 (a copy of
the database signs nobody in), the id and fingerprint of the API key it was made with (never
the key), the session's CSRF token and when it expires. A TTL index removes expired sessions;
`find` also refuses one past its time, as the TTL monitor runs only once a minute.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient

COLLECTION = "console_sessions"


@dataclass(frozen=True)
class ConsoleSession:
    session_hash: str
    key_id: str
    key_fingerprint: str
    csrf_token: str
    expires_at: datetime


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class ConsoleSessions:
    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]],
        database: str,
        ttl: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.collection = client[database][COLLECTION]
        self.ttl = ttl
        self.clock = clock

    async def ensure_indexes(self) -> None:
        await self.collection.create_index("expires_at", expireAfterSeconds=0)

    async def create(self, key_id: str, key_fingerprint: str) -> tuple[str, ConsoleSession]:
        """A new session: the id for the cookie (shown once), and what is stored."""
        session_id = secrets.token_urlsafe(32)
        session = ConsoleSession(
            session_hash=session_hash(session_id),
            key_id=key_id,
            key_fingerprint=key_fingerprint,
            csrf_token=secrets.token_urlsafe(32),
            expires_at=self.clock() + self.ttl,
        )
        await self.collection.insert_one(
            {
                "_id": session.session_hash,
                "key_id": key_id,
                "key_fingerprint": key_fingerprint,
                "csrf_token": session.csrf_token,
                "expires_at": session.expires_at,
            }
        )
        return session_id, session

    async def find(self, session_id: str) -> ConsoleSession | None:
        """The live session with this id, or None (unknown, signed out, or expired)."""
        document = await self.collection.find_one({"_id": session_hash(session_id)})
        if document is None:
            return None
        expires_at: datetime = document["expires_at"]
        if expires_at.tzinfo is None:  # BSON dates come back naive, in UTC
            expires_at = expires_at.replace(tzinfo=UTC)
        if expires_at <= self.clock():
            return None
        return ConsoleSession(
            session_hash=document["_id"],
            key_id=document["key_id"],
            key_fingerprint=document["key_fingerprint"],
            csrf_token=document["csrf_token"],
            expires_at=expires_at,
        )

    async def delete(self, session: ConsoleSession) -> None:
        await self.collection.delete_one({"_id": session.session_hash})
