"""The stack under deploy/nats/accounts.conf's least-privilege users, and NATS clients that
act as one of those users (an attacker holding a service's credentials)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
from fleetmail_devkit.stack import Stack, temporary_stack
from nats.aio.client import Client

from tests.utils import eventually

ACCOUNTS = Path(__file__).parents[2] / "deploy" / "nats" / "accounts.conf"
SERVICES = ("job-gateway", "token-service", "mail-service", "notifier")
USERS = ("provisioner", *SERVICES, "system")


@contextlib.asynccontextmanager
async def least_privilege_stack(prefix: str) -> AsyncIterator[Stack]:
    """nats-server with exactly deploy/nats/accounts.conf (fresh passwords), each service
    under its own user, the streams declared by the provisioner user."""
    passwords = {user: uuid.uuid4().hex for user in USERS}
    async with temporary_stack(
        prefix,
        nats_config=ACCOUNTS,
        nats_passwords=passwords,
        # The attachment sweep at work within a test's time: it reads the jobs and the dead
        # letters, and purges the object store, under mail-service's user.
        extra_env={
            "FLEETMAIL_METRICS_PORT": "0",
            "FLEETMAIL_MAIL_ATTACHMENT_ORPHAN_GRACE_S": "1",
            "FLEETMAIL_MAIL_ATTACHMENT_SWEEP_S": "0.5",
        },
    ) as stack:
        yield stack


def violations(stack: Stack) -> list[str]:
    """What nats-server logged as refused (authorization and permission violations)."""
    return [line for line in stack.part("nats").output if "Violation" in line]


class Intruder:
    """A NATS client under one service's user, remembering what the server refused."""

    def __init__(self, client: Client, errors: list[str]) -> None:
        self.client = client
        self.errors = errors

    async def refused(self, kind: str, subject: str) -> None:
        """Wait until the server has said `kind` ("publish" or "subscription") to `subject`
        is a permissions violation."""

        def seen() -> bool:
            return any(
                "permissions violation" in e.lower() and kind in e.lower() and subject.lower() in e.lower()
                for e in self.errors
            )

        await self.client.flush()
        await eventually(seen, within=5, every=0.05, what=f"{kind} to {subject} to be refused: {self.errors}")


@contextlib.asynccontextmanager
async def connected_as(stack: Stack, user: str, **options: Any) -> AsyncIterator[Intruder]:
    """A connection with `user`'s own password (`options`: nats.connect's, e.g. inbox_prefix)."""
    errors: list[str] = []

    async def collect(error: Exception) -> None:
        errors.append(str(error))

    client = await nats.connect(
        stack.nats_url,
        user=user,
        password=stack.nats_passwords[user],
        error_cb=collect,
        allow_reconnect=False,
        **options,
    )
    try:
        yield Intruder(client, errors)
    finally:
        await client.close()
