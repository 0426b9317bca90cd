"""The device directory: registering and changing devices, and finding the device behind a
session — by its id and secret (HTTP Basic, SMTP AUTH) or by its source address (SMTP from
devices that cannot AUTH). One place for both edges."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fleetmail_contracts.jobs import JobFunction
from fleetmail_contracts.tenants import TenantSettings

from ..credentials import hash_matches, keyed_hash, new_device_secret
from ..domain import Device, DeviceLogin, check_machine_address
from ..errors import DeviceNotFound, DeviceUnauthorized
from ..ports import DeviceStore
from ..schemas import DeviceChange, DeviceCredentials, DeviceRegistration, DeviceView

log = logging.getLogger("job-gateway.devices")


class DeviceDirectory:
    def __init__(
        self,
        store: DeviceStore,
        device_key: bytes,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.device_key = device_key
        self.clock = clock

    @staticmethod
    def _login(document: dict[str, Any], by: str) -> DeviceLogin:
        function = JobFunction(document.get("smtp_function") or JobFunction.SCAN_TO_EMAIL.value)
        device = Device(document["device_id"], document["tenant_id"], document.get("machine_address"))
        return DeviceLogin(device, function, by)

    async def authenticate(self, device_id: str, secret: str) -> DeviceLogin:
        """The device, if it exists, is enabled and the secret is its own. Device ids are per
        tenant, so several tenants may have a device of this id: the secret (random, 192 bits)
        says which one is signing in, and every candidate is checked alike."""
        matching = [
            document
            for document in await self.store.devices_named(device_id)
            if hash_matches(self.device_key, secret, document["secret_hash"])
        ]
        if len(matching) != 1 or matching[0].get("disabled"):
            raise DeviceUnauthorized("send the device id and secret with HTTP Basic authentication")
        return self._login(matching[0], "auth")

    async def by_address(self, host: str) -> DeviceLogin | None:
        """The device whose allowlist holds this address most specifically; none if two tie."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None
        best: list[tuple[int, dict[str, Any]]] = []
        for document in await self.store.devices_with_allowlist():
            if document.get("disabled"):
                continue
            for cidr in document.get("allow_cidrs", []):
                network = ipaddress.ip_network(cidr, strict=False)
                if address.version == network.version and address in network:
                    best.append((network.prefixlen, document))
        if not best:
            return None
        best.sort(key=lambda item: -item[0])
        if len(best) > 1 and best[0][0] == best[1][0] and best[0][1]["_id"] != best[1][1]["_id"]:
            log.warning("source address %s matches the allowlists of several devices; refused", host)
            return None
        return self._login(best[0][1], "address")

    async def register(self, tenant_id: str, registration: DeviceRegistration) -> DeviceCredentials:
        """A new device, or a new secret for one of the tenant's. Device ids are the tenant's
        own: another tenant's device of the same id is another device, untouched (and a
        registration says nothing about it)."""
        secret = new_device_secret()
        await self.store.save_device(
            tenant_id,
            registration.device_id,
            registration.name,
            keyed_hash(self.device_key, secret),
            self.clock(),
            registration.allow_cidrs,
            registration.smtp_function.value,
        )
        return DeviceCredentials(device_id=registration.device_id, tenant_id=tenant_id, secret=secret)

    async def in_tenant(self, tenant_id: str) -> list[DeviceView]:
        return [DeviceView.of(d) for d in await self.store.list_devices(tenant_id)]

    async def _of_tenant(self, tenant_id: str, device_id: str) -> dict[str, Any]:
        document = await self.store.device(tenant_id, device_id)
        if document is None:
            raise DeviceNotFound(f"no device {device_id!r} in {tenant_id!r}")
        return document

    async def change(self, tenant: TenantSettings, device_id: str, change: DeviceChange) -> DeviceView:
        """Disable or enable a device, set its Internet Fax machine address, its SMTP allowlist."""
        await self._of_tenant(tenant.tenant_id, device_id)
        changes = change.model_dump(exclude_none=True)
        if change.smtp_function is not None:
            changes["smtp_function"] = change.smtp_function.value
        if change.machine_address is not None:
            check_machine_address(tenant, change.machine_address)
        document = await self.store.update_device(tenant.tenant_id, device_id, changes)
        if document is None:  # removed meanwhile
            raise DeviceNotFound(f"no device {device_id!r} in {tenant.tenant_id!r}")
        return DeviceView.of(document)

    async def rotate_secret(self, tenant_id: str, device_id: str) -> DeviceCredentials:
        """A new secret for the device; the old one stops working at once."""
        await self._of_tenant(tenant_id, device_id)
        secret = new_device_secret()
        await self.store.update_device(
            tenant_id, device_id, {"secret_hash": keyed_hash(self.device_key, secret)}
        )
        return DeviceCredentials(device_id=device_id, tenant_id=tenant_id, secret=secret)
