"""Who a device is: by its id and secret (HTTP Basic, SMTP AUTH) or by its source address
(SMTP from devices that cannot AUTH). One place for both edges."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

from fleetmail_contracts.jobs import JobFunction

from .auth import secret_matches
from .intake import Device
from .store import GatewayStore

log = logging.getLogger("job-gateway.devices")


@dataclass(frozen=True)
class DeviceLogin:
    """Who a session belongs to, once the device proved it."""

    device: Device
    function: JobFunction
    by: str  # "auth" or "address"


class DeviceDirectory:
    """Finds the device behind a session: by its credentials, or by its source address."""

    def __init__(self, store: GatewayStore, device_key: bytes) -> None:
        self.store = store
        self.device_key = device_key

    @staticmethod
    def _login(document: dict[str, Any], by: str) -> DeviceLogin:
        function = JobFunction(document.get("smtp_function") or JobFunction.SCAN_TO_EMAIL.value)
        device = Device(document["_id"], document["tenant_id"], document.get("machine_address"))
        return DeviceLogin(device, function, by)

    async def by_credentials(self, device_id: str, secret: str) -> DeviceLogin | None:
        document = await self.store.device(device_id)
        if document is None or document.get("disabled"):
            return None
        if not secret_matches(self.device_key, secret, document["secret_hash"]):
            return None
        return self._login(document, "auth")

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
