"""Acquiring grants ([Acquire]): device code (Microsoft, `device_code.py`), authorization code
with PKCE (both providers), and app-only.

A sign-in is started only for an address in the tenant's mail domains, before any identity
provider is asked, and must be made by the principal the grant is for: the id_token's address
(and, for a Microsoft tenant with a directory id, its `tid`) is checked, and on a mismatch
nothing is stored (`signed_in.py`). An authorization-code flow is kept,
sealed, in the acquisition store until the browser comes back with its `state`, and is
redeemed once.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

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
)

from .app_only import AppOnlyGrants, outside_tenant
from .device_code import DeviceCodes
from .errors import ConfigurationError, OutsideTenant, SignInFailed, TokenServiceError
from .model import ClaimedFlow
from .ports import AcquisitionStore, Clock, IdentityProvider, TenantReader
from .settings import TokenSettings
from .signed_in import SignedIn

log = logging.getLogger(__name__)


class Acquirer:
    def __init__(
        self,
        settings: TokenSettings,
        identity: IdentityProvider,
        acquisitions: AcquisitionStore,
        tenants: TenantReader,
        signed_in: SignedIn,
        device_codes: DeviceCodes,
        app_only: AppOnlyGrants,
        clock: Clock,
    ) -> None:
        self.identity = identity
        self.acquisitions = acquisitions
        self.tenants = tenants
        self.signed_in = signed_in
        self.device_codes = device_codes
        self.app_only = app_only
        self.clock = clock
        self.ttl = timedelta(seconds=settings.acquisition_ttl_s)

    async def start(self, request: StartAcquisition) -> AcquisitionStarted:
        principal = request.principal
        tenant = await self.tenants.get(principal.tenant_id)
        if principal.kind is PrincipalKind.ADMINISTRATOR and (
            tenant.administrator_address is None
            or tenant.administrator_address.casefold() != principal.address.casefold()
        ):
            raise ConfigurationError(
                f"{principal.address} is not the registered administrator address of "
                f"tenant {tenant.tenant_id!r} ({tenant.administrator_address or 'none set'})",
                setting="the tenant's administrator_address",
            )
        if not tenant.accepts_sign_in(principal.address):  # app-only acts within it too
            raise OutsideTenant(outside_tenant(tenant, principal.address))
        if request.flow is AcquisitionFlow.DEVICE_CODE:
            if tenant.provider is Provider.GOOGLE:
                raise SignInFailed(
                    "Google's device flow cannot carry the Gmail scope: use the authorization-code "
                    "flow (the device's browser) for a Google tenant"
                )
            return await self.device_codes.start(principal, tenant)
        if request.flow is AcquisitionFlow.AUTHORIZATION_CODE:
            if not request.redirect_uri:
                raise SignInFailed("an authorization-code sign-in needs a redirect URI")
            return await self._start_authorization_code(principal, tenant, request.redirect_uri)
        return await self._acquire_app_only(principal, tenant)

    async def _acquire_app_only(self, principal: Principal, tenant: TenantSettings) -> AcquisitionStarted:
        """[Acquire] for an app-only tenant: the token comes at once, or the reason it cannot."""
        if not tenant.identity.app_only:
            raise ConfigurationError(
                f"tenant {tenant.tenant_id!r} does not send app-only: set identity.app_only in its settings",
                setting="identity.app_only",
            )
        await self.app_only.acquire(principal, tenant)
        return AcquisitionStarted(
            acquisition_id=uuid.uuid4().hex,
            flow=AcquisitionFlow.APP_ONLY,
            state=AcquisitionState.SUCCEEDED,
            message=f"Acquired for {principal.address} with the app's own credentials",
            expires_at=self.clock(),
        )

    async def _start_authorization_code(
        self, principal: Principal, tenant: TenantSettings, redirect_uri: str
    ) -> AcquisitionStarted:
        acquisition_id = uuid.uuid4().hex
        expires_at = self.clock() + self.ttl
        request = await self.identity.start_authorization(tenant, principal, redirect_uri)
        await self.acquisitions.create(
            acquisition_id,
            principal,
            tenant.provider,
            AcquisitionFlow.AUTHORIZATION_CODE,
            expires_at,
            request.state,
            request.flow,
        )
        return AcquisitionStarted(
            acquisition_id=acquisition_id,
            flow=AcquisitionFlow.AUTHORIZATION_CODE,
            authorization_url=request.authorization_url,
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
                raise SignInFailed(f"the sign-in was not completed ({answer.error})")
            if not answer.code:
                raise SignInFailed("the sign-in answer carries no code")
            tenant = await self.tenants.get(claimed.principal.tenant_id)
            redeemed = await self.identity.redeem_authorization(
                tenant, claimed.provider, claimed.flow, answer.state, answer.code
            )
            await self.signed_in.store(
                claimed.principal, claimed.provider, AcquisitionFlow.AUTHORIZATION_CODE, redeemed
            )
        except TokenServiceError as exc:
            return await self._failed(claimed, str(exc))
        except Exception as exc:
            # The answer was claimed: it cannot be used again, so the sign-in ends here.
            log.exception("sign-in %s failed unexpectedly", claimed.acquisition_id)
            return await self._failed(
                claimed, f"the sign-in could not be completed ({type(exc).__name__}); start it again"
            )
        detail = f"Acquired for {claimed.principal.address}"
        await self.acquisitions.finish(claimed.acquisition_id, AcquisitionState.SUCCEEDED, detail)
        return AcquisitionStatus(
            acquisition_id=claimed.acquisition_id,
            state=AcquisitionState.SUCCEEDED,
            principal=claimed.principal,
            detail=detail,
        )

    async def _failed(self, claimed: ClaimedFlow, detail: str) -> AcquisitionStatus:
        await self.acquisitions.finish(claimed.acquisition_id, AcquisitionState.FAILED, detail)
        return AcquisitionStatus(
            acquisition_id=claimed.acquisition_id,
            state=AcquisitionState.FAILED,
            principal=claimed.principal,
            detail=detail,
        )

    async def status(self, acquisition_id: str, tenant_id: str) -> AcquisitionStatus:
        return await self.acquisitions.status(acquisition_id, tenant_id, self.clock())
