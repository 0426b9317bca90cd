"""Acquiring grants: device code (Microsoft), authorization code with PKCE (both providers),
and app-only.

A sign-in must be made by the principal the grant is for: the id_token's address is
checked, and on a mismatch nothing is stored. A device-code flow is polled by one replica
at a time, under a lease in the acquisition's record; if that replica dies, another takes
the flow over (`adopt_orphans`, run periodically), so the user's sign-in is not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import (
    AcquisitionFlow,
    AcquisitionStarted,
    AcquisitionState,
    AcquisitionStatus,
    CompleteAuthorization,
    Principal,
    PrincipalKind,
    Provider,
    StartAcquisition,
    TokenAcquired,
    TokenEventBase,
)
from fleetmail_runtime.tenants import TenantDirectory, UnknownTenant

from .adapters.acquisitions import AcquisitionStore
from .adapters.grants import GrantStore, IssuedToken
from .adapters.microsoft import MicrosoftApp, TokenResult
from .domain import identity_matches, predicted_death, signed_in_address
from .errors import (
    ConfigurationError,
    IdentityMismatch,
    ProviderUnavailable,
    ReauthorizationRequired,
    TokenServiceError,
)
from .providers import Providers
from .settings import TokenSettings

log = logging.getLogger(__name__)

Publish = Callable[[TokenEventBase], Awaitable[None]]
Acquired = Callable[[Principal, Provider, IssuedToken], None]
AppOnly = Callable[[Principal, TenantSettings], Awaitable[object]]


@dataclass
class DeviceFlow:
    acquisition_id: str
    principal: Principal
    app: MicrosoftApp
    expires_at: datetime
    flow: dict[str, Any] = field(repr=False)
    task: asyncio.Task[None] | None = None


class Acquirer:
    def __init__(
        self,
        settings: TokenSettings,
        providers: Providers,
        grants: GrantStore,
        acquisitions: AcquisitionStore,
        tenants: TenantDirectory,
        publish: Publish,
        on_acquired: Acquired,
        app_only: AppOnly,
        clock: Callable[[], datetime],
        owner: str,
    ) -> None:
        self.settings = settings
        self.providers = providers
        self.grants = grants
        self.acquisitions = acquisitions
        self.tenants = tenants
        self.publish = publish
        self.on_acquired = on_acquired
        self.app_only = app_only
        self.clock = clock
        self.owner = owner
        self._device_flows: dict[str, DeviceFlow] = {}

    async def close(self) -> None:
        for flow in list(self._device_flows.values()):
            if flow.task is not None:
                flow.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flow.task
            # Hand the sign-in over: another replica polls it from its next check.
            await self.acquisitions.release_poller(flow.acquisition_id, self.owner, self.clock())

    def _poller_expiry(self, flow: dict[str, Any]) -> datetime:
        interval = float(flow.get("interval", 5))
        return self.clock() + timedelta(seconds=interval + self.settings.device_poll_grace_s)

    async def adopt_orphans(self) -> None:
        """Take over device-code flows whose polling replica died. Idempotent."""
        for acquisition_id in await self.acquisitions.orphaned_device_flows(self.clock()):
            if acquisition_id in self._device_flows:
                continue
            claimed = await self.acquisitions.take_over(
                acquisition_id, self.owner, self.clock(), self.clock() + timedelta(seconds=5)
            )
            if claimed is None:
                continue  # another replica was quicker
            try:
                tenant = await self.tenants.get(claimed.principal.tenant_id)
                app = await self.providers.microsoft_app(tenant)
            except (TokenServiceError, UnknownTenant) as exc:
                await self._finish(acquisition_id, AcquisitionState.FAILED, str(exc))
                continue
            expires_at = datetime.fromtimestamp(float(claimed.flow["expires_at"]), UTC)
            device_flow = DeviceFlow(acquisition_id, claimed.principal, app, expires_at, claimed.flow)
            self._device_flows[acquisition_id] = device_flow
            device_flow.task = asyncio.create_task(self._poll(device_flow))
            log.info("took over device code sign-in %s from a replica that stopped", acquisition_id)

    async def start(self, request: StartAcquisition) -> AcquisitionStarted:
        principal = request.principal
        tenant = await self.tenants.get(principal.tenant_id)
        if principal.kind is PrincipalKind.ADMINISTRATOR and (
            tenant.administrator_address is None
            or tenant.administrator_address.casefold() != principal.address.casefold()
        ):
            raise ConfigurationError(
                f"{principal.address} is not the registered administrator address of "
                f"tenant {tenant.tenant_id!r} ({tenant.administrator_address or 'none set'})"
            )
        if request.flow is AcquisitionFlow.DEVICE_CODE:
            if tenant.provider is Provider.GOOGLE:
                raise ConfigurationError(
                    "Google's device flow cannot carry the Gmail scope: use the authorization-code "
                    "flow (the device's browser) for a Google tenant"
                )
            return await self._start_device_flow(principal, tenant)
        if request.flow is AcquisitionFlow.AUTHORIZATION_CODE:
            if not request.redirect_uri:
                raise ConfigurationError("an authorization-code sign-in needs a redirect URI")
            return await self._start_authorization_code(principal, tenant, request.redirect_uri)
        return await self._acquire_app_only(principal, tenant)

    async def _acquire_app_only(self, principal: Principal, tenant: TenantSettings) -> AcquisitionStarted:
        """[Acquire] for an app-only tenant: the token comes at once, or the reason it cannot."""
        if not tenant.identity.app_only:
            raise ConfigurationError(
                f"tenant {tenant.tenant_id!r} does not send app-only: set identity.app_only in its settings"
            )
        await self.app_only(principal, tenant)
        now = self.clock()
        return AcquisitionStarted(
            acquisition_id=uuid.uuid4().hex,
            flow=AcquisitionFlow.APP_ONLY,
            state=AcquisitionState.SUCCEEDED,
            message=f"Acquired for {principal.address} with the app's own credentials",
            expires_at=now,
        )

    # --- device code -------------------------------------------------------------------

    async def _start_device_flow(self, principal: Principal, tenant: TenantSettings) -> AcquisitionStarted:
        app = await self.providers.microsoft_app(tenant)
        flow = await self.providers.microsoft.initiate_device_flow(app, list(self.settings.microsoft_scopes))
        expires_at = self.clock() + timedelta(seconds=float(flow.get("expires_in", 900)))
        device_flow = DeviceFlow(uuid.uuid4().hex, principal, app, expires_at, flow)
        await self.acquisitions.create(
            device_flow.acquisition_id,
            principal,
            Provider.MICROSOFT,
            AcquisitionFlow.DEVICE_CODE,
            expires_at,
            flow=flow,
            poller=(self.owner, self._poller_expiry(flow)),
        )
        self._device_flows[device_flow.acquisition_id] = device_flow
        device_flow.task = asyncio.create_task(self._poll(device_flow))
        return AcquisitionStarted(
            acquisition_id=device_flow.acquisition_id,
            flow=AcquisitionFlow.DEVICE_CODE,
            verification_uri=flow.get("verification_uri"),
            user_code=flow.get("user_code"),
            message=flow.get("message"),
            expires_at=expires_at,
            interval_s=float(flow.get("interval", 5)),
        )

    async def _poll(self, device_flow: DeviceFlow) -> None:
        """One non-blocking poll per interval (MSAL raises the interval on slow_down)."""
        acquisition_id = device_flow.acquisition_id
        try:
            while self.clock() < device_flow.expires_at:
                if not await self.acquisitions.renew_poller(
                    acquisition_id, self.owner, self._poller_expiry(device_flow.flow)
                ):
                    log.info("device code sign-in %s is polled by another replica now", acquisition_id)
                    return
                await asyncio.sleep(float(device_flow.flow.get("interval", 5)))
                try:
                    result = await self.providers.microsoft.poll_device_flow(
                        device_flow.app, device_flow.flow
                    )
                except ProviderUnavailable as exc:
                    log.warning("device code poll failed, will retry: %s", exc)
                    continue
                if result is None:
                    continue
                await self._store(
                    device_flow.principal,
                    Provider.MICROSOFT,
                    AcquisitionFlow.DEVICE_CODE,
                    result,
                    device_flow.app.authority,
                    device_flow.app.client_id,
                )
                await self._finish(
                    acquisition_id,
                    AcquisitionState.SUCCEEDED,
                    f"Acquired for {device_flow.principal.address}",
                )
                return
            await self._finish(
                acquisition_id,
                AcquisitionState.EXPIRED,
                "the code expired before sign-in finished; start again",
            )
        except (IdentityMismatch, ReauthorizationRequired, ConfigurationError) as exc:
            await self._finish(acquisition_id, AcquisitionState.FAILED, str(exc))
        except Exception:
            # Never leave a sign-in pending forever: say it failed, and why, in the log.
            log.exception("device code sign-in %s failed unexpectedly", acquisition_id)
            await self._finish(acquisition_id, AcquisitionState.FAILED, "the sign-in failed; start it again")
        finally:
            device_flow.flow = {}
            self._device_flows.pop(acquisition_id, None)

    # --- authorization code ------------------------------------------------------------

    async def _start_authorization_code(
        self, principal: Principal, tenant: TenantSettings, redirect_uri: str
    ) -> AcquisitionStarted:
        acquisition_id = uuid.uuid4().hex
        expires_at = self.clock() + timedelta(seconds=self.settings.acquisition_ttl_s)
        if tenant.provider is Provider.MICROSOFT:
            app = await self.providers.microsoft_app(tenant)
            flow = await self.providers.microsoft.initiate_auth_code_flow(
                app, list(self.settings.microsoft_scopes), redirect_uri, principal.address
            )
            oauth_state, url = flow["state"], flow["auth_uri"]
        else:
            google_app = await self.providers.google_app(tenant)
            pkce = self.providers.google.authorization_request(
                google_app, list(self.settings.google_scopes), redirect_uri, principal.address
            )
            oauth_state, url = pkce.state, pkce.authorization_url
            flow = {"code_verifier": pkce.code_verifier, "redirect_uri": redirect_uri}
        await self.acquisitions.create(
            acquisition_id,
            principal,
            tenant.provider,
            AcquisitionFlow.AUTHORIZATION_CODE,
            expires_at,
            oauth_state,
            flow,
        )
        return AcquisitionStarted(
            acquisition_id=acquisition_id,
            flow=AcquisitionFlow.AUTHORIZATION_CODE,
            authorization_url=url,
            message="Open the authorization URL in the device's browser and sign in.",
            expires_at=expires_at,
        )

    async def complete(self, answer: CompleteAuthorization) -> AcquisitionStatus:
        """The redirect came back: redeem the code, once, for the principal who started it."""
        claimed = await self.acquisitions.claim(answer.state, self.clock())
        if claimed is None:
            return AcquisitionStatus(
                acquisition_id="",
                state=AcquisitionState.FAILED,
                detail="this sign-in link was already used or has expired; start again",
            )
        try:
            if answer.error:
                raise ConfigurationError(f"the sign-in was not completed ({answer.error})")
            if not answer.code:
                raise ConfigurationError("the sign-in answer carries no code")
            tenant = await self.tenants.get(claimed.principal.tenant_id)
            if claimed.provider is Provider.MICROSOFT:
                app = await self.providers.microsoft_app(tenant)
                response = {"state": answer.state, "code": answer.code}
                result = await self.providers.microsoft.redeem_auth_code(app, claimed.flow, response)
                authority, client_id = app.authority, app.client_id
            else:
                google_app = await self.providers.google_app(tenant)
                result = await self.providers.google.redeem_code(
                    google_app, answer.code, claimed.flow["code_verifier"], claimed.flow["redirect_uri"]
                )
                authority, client_id = google_app.token_uri, google_app.client_id
            await self._store(
                claimed.principal,
                claimed.provider,
                AcquisitionFlow.AUTHORIZATION_CODE,
                result,
                authority,
                client_id,
            )
        except (IdentityMismatch, ReauthorizationRequired, ConfigurationError, ProviderUnavailable) as exc:
            await self._finish(claimed.acquisition_id, AcquisitionState.FAILED, str(exc))
            return AcquisitionStatus(
                acquisition_id=claimed.acquisition_id,
                state=AcquisitionState.FAILED,
                principal=claimed.principal,
                detail=str(exc),
            )
        detail = f"Acquired for {claimed.principal.address}"
        await self._finish(claimed.acquisition_id, AcquisitionState.SUCCEEDED, detail)
        return AcquisitionStatus(
            acquisition_id=claimed.acquisition_id,
            state=AcquisitionState.SUCCEEDED,
            principal=claimed.principal,
            detail=detail,
        )

    # --- common ------------------------------------------------------------------------

    async def _store(
        self,
        principal: Principal,
        provider: Provider,
        flow: AcquisitionFlow,
        result: TokenResult,
        authority: str | None,
        client_id: str | None,
    ) -> None:
        if not identity_matches(principal, result.id_token_claims):
            raise IdentityMismatch(
                f"signed in as {signed_in_address(result.id_token_claims) or 'an unknown account'}, "
                f"but the grant is for {principal.address}: sign in with that account"
            )
        if result.refresh_token is None:
            raise ConfigurationError(
                "the provider returned no refresh token (offline access was not granted)"
            )
        tenant = await self.tenants.get(principal.tenant_id)
        now = self.clock()
        issued = IssuedToken(
            result.access_token, now, now + timedelta(seconds=result.expires_in), result.refresh_token
        )
        death = predicted_death(provider, now, now, tenant.identity.google_testing_mode)
        await self.grants.replace(
            principal, provider, issued, result.scopes, flow, authority, client_id, death
        )
        self.on_acquired(principal, provider, issued)
        await self.publish(
            TokenAcquired(
                event_id=uuid.uuid4().hex,
                principal=principal,
                provider=provider,
                occurred_at=now,
                flow=flow,
                predicted_death_at=death,
            )
        )

    async def _finish(self, acquisition_id: str, state: AcquisitionState, detail: str) -> None:
        await self.acquisitions.finish(acquisition_id, state, detail)

    async def status(self, acquisition_id: str, tenant_id: str) -> AcquisitionStatus:
        return await self.acquisitions.status(acquisition_id, tenant_id, self.clock())
