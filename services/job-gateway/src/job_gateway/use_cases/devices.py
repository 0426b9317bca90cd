"""The device directory: registering and changing devices, and finding the device behind a
session — by its id and secret (HTTP Basic, SMTP AUTH) or by its source address (SMTP from
devices that cannot AUTH). One place for both edges.

Source addresses are found in an in-memory index (`allowlists.AllowlistIndex`), built at
start, again after every change made through this replica, and every
`FLEETMAIL_GATEWAY_ALLOWLIST_REFRESH_S` for changes made through other replicas; a claim is
checked against the database, so it sees every replica's devices."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from fleetmail_contracts.jobs import JobFunction
from fleetmail_contracts.tenants import TenantSettings

from ..allowlists import AllowlistIndex, AllowlistPolicy, check_ranges, check_unclaimed
from ..credentials import hash_matches, keyed_hash, new_device_secret
from ..domain import Device, DeviceLogin, check_machine_address, device_attention, device_matches
from ..errors import DeviceAlreadyRegistered, DeviceNotFound, DeviceUnauthorized, SecretAlreadyRotated
from ..ports import DeviceStore
from ..schemas import DeviceChange, DeviceCredentials, DeviceRegistration, DeviceView, SmtpRule

log = logging.getLogger("job-gateway.devices")


class DeviceDirectory:
    def __init__(
        self,
        store: DeviceStore,
        device_key: bytes,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        policy: AllowlistPolicy | None = None,
        max_session_users: int = 500,
    ) -> None:
        """`max_session_users`: how many users each of a device's lists holds between auto
        resets (its document is read at every AUTH and the list sent whole at auto reset)."""
        self.store = store
        self.max_session_users = max_session_users
        self.device_key = device_key
        self.clock = clock
        self.policy = policy or AllowlistPolicy()
        self._index: AllowlistIndex[DeviceLogin] = AllowlistIndex([], self.policy)
        self._ignored: list[str] = []

    async def reload(self) -> None:
        """Build the address index again from the stored allowlists (every replica's)."""
        entries = [
            (self._login(document, "address"), document.get("allow_cidrs", []))
            for document in await self.store.devices_with_allowlist()
            if not document.get("disabled")
        ]
        index = AllowlistIndex(entries, self.policy)
        if index.ignored != self._ignored:
            log.warning(
                "allowlist ranges wider than this deployment allows are ignored: %s "
                "(FLEETMAIL_GATEWAY_MIN_ALLOWLIST_PREFIX_V4/_V6)",
                ", ".join(index.ignored) or "none any more",
            )
        self._index, self._ignored = index, index.ignored

    async def _check_claim(self, tenant_id: str, device_id: str, cidrs: list[str]) -> None:
        """The ranges are narrow enough and no other device (of any tenant) holds them."""
        wanted = check_ranges(cidrs, self.policy)
        others = [
            cidr
            for document in await self.store.devices_with_allowlist()
            if (document["tenant_id"], document["device_id"]) != (tenant_id, device_id)
            for cidr in document.get("allow_cidrs", [])
        ]
        check_unclaimed(wanted, others)

    @staticmethod
    def _login(document: dict[str, Any], by: str) -> DeviceLogin:
        function = JobFunction(document.get("smtp_function") or JobFunction.SCAN_TO_EMAIL.value)
        # The address index is built now and then: its view of the sessions would be stale.
        auth = by == "auth"
        sessions = frozenset(document.get("session_users") or ()) if auth else None
        signed_in = frozenset(document.get("signed_in_users") or ()) if auth else None
        device = Device(
            document["device_id"], document["tenant_id"], document.get("machine_address"), sessions, signed_in
        )
        rules = tuple(SmtpRule.model_validate(rule) for rule in document.get("smtp_rules") or ())
        return DeviceLogin(device, function, by, rules)

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
        """The one device whose allowlist holds this address (none if none does, or several);
        from memory, no database round trip per `MAIL`."""
        return self._index.lookup(host)

    async def register(
        self, tenant_id: str, registration: DeviceRegistration, *, new_only: bool = False
    ) -> DeviceCredentials:
        """A new device, or a new secret for one of the tenant's (`new_only`: refused with
        `DeviceAlreadyRegistered`). Device ids are the tenant's own: another tenant's device
        of the same id is another device, untouched (and a registration says nothing about
        it). Its address ranges must be free."""
        if new_only and await self.store.device(tenant_id, registration.device_id) is not None:
            raise DeviceAlreadyRegistered(
                f"{registration.device_id!r} is registered already: open it to rotate its secret"
            )
        if registration.allow_cidrs:
            await self._check_claim(tenant_id, registration.device_id, registration.allow_cidrs)
        secret = new_device_secret()
        await self.store.save_device(
            tenant_id,
            registration.device_id,
            registration.name,
            keyed_hash(self.device_key, secret),
            self.clock(),
            registration.allow_cidrs,
            registration.smtp_function.value,
            [rule.model_dump(mode="json", exclude_none=True) for rule in registration.smtp_rules],
        )
        await self.reload()
        return DeviceCredentials(device_id=registration.device_id, tenant_id=tenant_id, secret=secret)

    async def in_tenant(self, tenant: TenantSettings, search: str | None = None) -> list[DeviceView]:
        """The tenant's devices, each with what needs an administrator's attention; `search`:
        those whose id, name, Internet Fax address or an allowlisted range holds it."""
        return [
            DeviceView.of(d, device_attention(tenant, d.get("machine_address")))
            for d in await self.store.list_devices(tenant.tenant_id)
            if not search or device_matches(d, search)
        ]

    async def one(self, tenant: TenantSettings, device_id: str) -> DeviceView:
        document = await self._of_tenant(tenant.tenant_id, device_id)
        return DeviceView.of(document, device_attention(tenant, document.get("machine_address")))

    async def note_session(self, device: Device, user: str) -> None:
        """A user's sign-in or job came from this device: Auto Delete at its auto reset
        deletes their token. Written once per user between resets; a full list takes no more
        (logged: that user's token outlives the auto reset)."""
        key = user.casefold()
        if device.session_users is not None and key in device.session_users:
            return
        await self._note(device, key, signed_in=False)

    async def note_sign_in(self, device: Device, user: str) -> None:
        """A user's sign-in at this device succeeded: a message over SMTP From them, from
        this device, may use their grant until its auto reset or their logout."""
        key = user.casefold()
        if device.signed_in_users is not None and key in device.signed_in_users:
            return
        await self._note(device, key, signed_in=True)

    async def signed_in_here(self, device: Device, user: str) -> bool:
        key = user.casefold()
        if device.signed_in_users is not None:
            return key in device.signed_in_users
        document = await self.store.device(device.tenant_id, device.device_id)
        return document is not None and key in (document.get("signed_in_users") or ())

    async def _note(self, device: Device, key: str, signed_in: bool) -> None:
        limit = self.max_session_users
        if not await self.store.add_session_user(device.tenant_id, device.device_id, key, limit, signed_in):
            log.warning(
                "device %s of tenant %s already lists %d %s: %s is not noted until its next auto reset",
                device.device_id,
                device.tenant_id,
                limit,
                "signed-in users" if signed_in else "session users",
                key,
            )

    async def session_users(self, device: Device) -> list[str]:
        """The users whose sessions were on the device since its last auto reset."""
        document = await self.store.device(device.tenant_id, device.device_id)
        return list(document.get("session_users") or ()) if document is not None else []

    async def end_sessions(self, device: Device, users: list[str]) -> None:
        await self.store.remove_session_users(
            device.tenant_id, device.device_id, [u.casefold() for u in users]
        )

    async def _of_tenant(self, tenant_id: str, device_id: str) -> dict[str, Any]:
        document = await self.store.device(tenant_id, device_id)
        if document is None:
            raise DeviceNotFound(f"no device {device_id!r} in {tenant_id!r}")
        return document

    async def change(self, tenant: TenantSettings, device_id: str, change: DeviceChange) -> DeviceView:
        """Disable or enable a device, set its Internet Fax machine address, its SMTP allowlist,
        function and rules."""
        await self._of_tenant(tenant.tenant_id, device_id)
        changes = change.model_dump(exclude_none=True)
        if change.smtp_function is not None:
            changes["smtp_function"] = change.smtp_function.value
        if change.smtp_rules is not None:
            changes["smtp_rules"] = [
                rule.model_dump(mode="json", exclude_none=True) for rule in change.smtp_rules
            ]
        if change.machine_address is not None:
            check_machine_address(tenant, change.machine_address)
        if change.allow_cidrs:
            await self._check_claim(tenant.tenant_id, device_id, change.allow_cidrs)
        document = await self.store.update_device(tenant.tenant_id, device_id, changes)
        if document is None:  # removed meanwhile
            raise DeviceNotFound(f"no device {device_id!r} in {tenant.tenant_id!r}")
        await self.reload()
        return DeviceView.of(document, device_attention(tenant, document.get("machine_address")))

    async def secret_version(self, tenant_id: str, device_id: str) -> str:
        """Which secret the device has now (a digest of its hash, nothing to sign in with): a
        page that offers [Rotate] sends it back, so a form sent twice rotates once."""
        return _version_of(await self._of_tenant(tenant_id, device_id))

    async def rotate_secret(
        self, tenant_id: str, device_id: str, version: str | None = None
    ) -> DeviceCredentials:
        """A new secret for the device; the old one stops working at once. `version`: the
        secret the caller saw (`secret_version`); rotated since, nothing is done."""
        document = await self._of_tenant(tenant_id, device_id)
        if version is not None and version != _version_of(document):
            raise SecretAlreadyRotated(
                "the device's secret was changed after this page was shown, so nothing was "
                "rotated (was the form sent twice?): open the device again to rotate it"
            )
        secret = new_device_secret()
        await self.store.update_device(
            tenant_id, device_id, {"secret_hash": keyed_hash(self.device_key, secret)}
        )
        return DeviceCredentials(device_id=device_id, tenant_id=tenant_id, secret=secret)


def _version_of(document: Mapping[str, Any]) -> str:
    return hashlib.sha256(str(document.get("secret_hash", "")).encode()).hexdigest()[:16]
