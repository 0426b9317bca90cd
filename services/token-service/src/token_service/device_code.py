"""Device-code sign-ins (Microsoft): one replica polls each, and another takes it over when
that replica stops.

The polling replica renews its claim on the acquisition's record before each poll; the claim
lasts one polling interval plus `device_poll_grace_s`. A replica that dies stops renewing,
and every replica looks for such orphans every `device_poll_check_s` (`adopt_orphans`), so a
sign-in the user already started still completes. A replica that shuts down hands its
sign-ins over at once (`close`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import (
    AcquisitionFlow,
    AcquisitionStarted,
    AcquisitionState,
    Principal,
    Provider,
)

from .errors import PermanentError, ProviderUnavailable, UnreadableReply
from .ports import AcquisitionStore, Clock, IdentityProvider, Sleeper, TenantReader
from .settings import TokenSettings
from .signed_in import SignedIn

log = logging.getLogger(__name__)

TAKEOVER_CLAIM_S = 5.0
"""How long a replica that just took a flow over has before its first renewal."""


@dataclass
class DevicePoll:
    acquisition_id: str
    principal: Principal
    tenant: TenantSettings
    expires_at: datetime
    flow: dict[str, Any] = field(repr=False)
    task: asyncio.Task[None] | None = None

    @property
    def interval_s(self) -> float:
        return float(self.flow.get("interval", 5))


class DeviceCodes:
    def __init__(
        self,
        settings: TokenSettings,
        identity: IdentityProvider,
        acquisitions: AcquisitionStore,
        tenants: TenantReader,
        signed_in: SignedIn,
        clock: Clock,
        sleeper: Sleeper,
        owner: str,
    ) -> None:
        self.identity = identity
        self.acquisitions = acquisitions
        self.tenants = tenants
        self.signed_in = signed_in
        self.clock = clock
        self.sleeper = sleeper
        self.owner = owner
        self.grace = timedelta(seconds=settings.device_poll_grace_s)
        self._polls: dict[str, DevicePoll] = {}

    def polling(self) -> list[str]:
        """The acquisitions this replica polls now."""
        return list(self._polls)

    async def start(self, principal: Principal, tenant: TenantSettings) -> AcquisitionStarted:
        flow = await self.identity.start_device_flow(tenant)
        expires_at = self.clock() + timedelta(seconds=float(flow.get("expires_in", 900)))
        poll = DevicePoll(uuid.uuid4().hex, principal, tenant, expires_at, flow)
        await self.acquisitions.create(
            poll.acquisition_id,
            principal,
            Provider.MICROSOFT,
            AcquisitionFlow.DEVICE_CODE,
            expires_at,
            flow=flow,
            poller=(self.owner, self._claim_until(poll)),
        )
        self._begin(poll)
        return AcquisitionStarted(
            acquisition_id=poll.acquisition_id,
            flow=AcquisitionFlow.DEVICE_CODE,
            verification_uri=flow.get("verification_uri"),
            user_code=flow.get("user_code"),
            message=flow.get("message"),
            expires_at=expires_at,
            interval_s=poll.interval_s,
        )

    async def adopt_orphans(self) -> None:
        """Take over device-code flows whose polling replica died. Idempotent."""
        for acquisition_id in await self.acquisitions.orphaned_device_flows(self.clock()):
            if acquisition_id in self._polls:
                continue
            now = self.clock()
            claimed = await self.acquisitions.take_over(
                acquisition_id, self.owner, now, now + timedelta(seconds=TAKEOVER_CLAIM_S)
            )
            if claimed is None:
                continue  # another replica was quicker
            try:
                tenant = await self.tenants.get(claimed.principal.tenant_id)
            except PermanentError as exc:
                await self.acquisitions.finish(acquisition_id, AcquisitionState.FAILED, str(exc))
                continue
            expires_at = datetime.fromtimestamp(float(claimed.flow["expires_at"]), UTC)
            self._begin(DevicePoll(acquisition_id, claimed.principal, tenant, expires_at, claimed.flow))
            log.info("took over device code sign-in %s from a replica that stopped", acquisition_id)

    async def close(self) -> None:
        """Stop polling, and hand the sign-ins over: another replica polls them from its next check."""
        for poll in list(self._polls.values()):
            if poll.task is not None:
                poll.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poll.task
            await self.acquisitions.release_poller(poll.acquisition_id, self.owner, self.clock())

    def _claim_until(self, poll: DevicePoll) -> datetime:
        return self.clock() + timedelta(seconds=poll.interval_s) + self.grace

    def _begin(self, poll: DevicePoll) -> None:
        self._polls[poll.acquisition_id] = poll
        poll.task = asyncio.create_task(self._poll(poll))

    async def _poll(self, poll: DevicePoll) -> None:
        """One non-blocking poll per interval (MSAL raises the interval on slow_down)."""
        acquisition_id = poll.acquisition_id
        try:
            while self.clock() < poll.expires_at:
                if not await self.acquisitions.renew_poller(
                    acquisition_id, self.owner, self._claim_until(poll)
                ):
                    log.info("device code sign-in %s is polled by another replica now", acquisition_id)
                    return
                await self.sleeper(poll.interval_s)
                try:
                    redeemed = await self.identity.poll_device_flow(poll.tenant, poll.flow)
                except UnreadableReply:
                    raise  # not a provider that is busy: polling on would only repeat it
                except ProviderUnavailable as exc:
                    log.warning("device code poll failed, will retry: %s", exc)
                    continue
                if redeemed is None:
                    continue
                await self.signed_in.store(
                    poll.principal, Provider.MICROSOFT, AcquisitionFlow.DEVICE_CODE, redeemed
                )
                detail = f"Acquired for {poll.principal.address}"
                await self.acquisitions.finish(acquisition_id, AcquisitionState.SUCCEEDED, detail)
                return
            await self.acquisitions.finish(
                acquisition_id,
                AcquisitionState.EXPIRED,
                "the code expired before sign-in finished; start again",
            )
        except (PermanentError, UnreadableReply) as exc:
            await self.acquisitions.finish(acquisition_id, AcquisitionState.FAILED, str(exc))
        except Exception as exc:
            # Never leave a sign-in pending forever: say it failed, and why, in the log.
            log.exception("device code sign-in %s failed unexpectedly", acquisition_id)
            await self.acquisitions.finish(
                acquisition_id,
                AcquisitionState.FAILED,
                f"the sign-in failed ({type(exc).__name__}); start it again",
            )
        finally:
            poll.flow = {}
            self._polls.pop(acquisition_id, None)
