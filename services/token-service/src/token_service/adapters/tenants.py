"""The `TenantReader` port over the runtime's tenant directory (the tenants KV bucket)."""

from __future__ import annotations

from fleetmail_contracts.tenants import TenantSettings
from fleetmail_runtime import tenants

from ..errors import UnknownTenant


class DirectoryTenants:
    def __init__(self, directory: tenants.TenantDirectory) -> None:
        self._directory = directory

    async def get(self, tenant_id: str) -> TenantSettings:
        try:
            return await self._directory.get(tenant_id)
        except tenants.UnknownTenant as exc:
            raise UnknownTenant(tenant_id) from exc
