"""What job-gateway's store must do (`job_gateway.ports.GatewayStore`), whatever keeps it.

Subclassed with the in-memory fake (`tests/unit/test_gateway_store_fake.py`) and the MongoDB
adapter (`tests/component/test_gateway_store_mongo.py`): a subclass provides `store`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fleetmail_contracts.tenants import TenantSettings
from job_gateway.credentials import HashKey
from job_gateway.domain import TIMELINE_LENGTH, Role, StatusUpdate
from job_gateway.ports import GatewayStore, StoredApiKey, TenantCounts
from job_gateway.schemas import TsiRoute, TsiRoutingTable

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def api_key(key_id: str, created_at: datetime = T0, secret_hash: str = "h0") -> StoredApiKey:
    return StoredApiKey(
        key_id=key_id,
        name=f"key {key_id}",
        role=Role.FLEET_ADMIN,
        tenant_ids=("t1", "t2"),
        secret_hash=secret_hash,
        hash_key=HashKey.API,
        created_at=created_at,
    )


def job(job_id: str, tenant_id: str = "t1", minutes: int = 0, status: str = "queued") -> dict[str, object]:
    at = T0 + timedelta(minutes=minutes)
    return {
        "_id": job_id,
        "tenant_id": tenant_id,
        "device_id": "d1",
        "function": "scan_to_email",
        "status": status,
        "submitted_at": at,
        "updated_at": at,
    }


class GatewayStoreContract:
    @pytest.fixture
    def store(self) -> GatewayStore:
        raise NotImplementedError

    async def test_a_tsi_routing_table_is_saved_only_at_the_revision_it_was_read_at(
        self, store: GatewayStore
    ) -> None:
        assert await store.tsi_routing("t1") == (TsiRoutingTable(), 0)
        first = TsiRoutingTable(
            routes=[TsiRoute(tsi="ACME.$sales", recipients=["a@t1.example"])], default=["d@t1.example"]
        )
        assert await store.save_tsi_routing("t1", first, 0) is True
        assert await store.save_tsi_routing("t1", TsiRoutingTable(), 0) is False, "created meanwhile"
        assert await store.tsi_routing("t1") == (first, 1)
        second = TsiRoutingTable(default=["e@t1.example"])
        assert await store.save_tsi_routing("t1", second, 1) is True
        assert await store.save_tsi_routing("t1", first, 1) is False, "changed meanwhile"
        assert await store.tsi_routing("t1") == (second, 2)
        assert await store.tsi_routing("t2") == (TsiRoutingTable(), 0), "each tenant has its own"

    async def test_the_overview_counts_devices_dead_letters_and_unfinished_jobs_per_tenant(
        self, store: GatewayStore
    ) -> None:
        for tenant_id, device_id in (("t1", "d1"), ("t1", "d2"), ("t1", "d1"), ("t2", "d1")):
            await store.save_device(tenant_id, device_id, "MFP", "hash", T0)  # d1 of t1 twice: one device
        for job_id, tenant_id, status in (
            ("j1", "t1", "queued"),
            ("j2", "t1", "parked"),
            ("j3", "t1", "sent"),
            ("j4", "t1", "queued"),
            ("j5", "t2", "queued"),
            ("j6", "t2", "queued"),
        ):
            assert await store.record_job(job(job_id, tenant_id, status=status))
        failed = StatusUpdate("j4", "failed", T0 + timedelta(minutes=5), {"dead_lettered_at": T0})
        long_ago = StatusUpdate("j5", "failed", T0, {"dead_lettered_at": T0 - timedelta(days=2)})
        await store.update_job_statuses([failed, long_ago])
        await store.mark_job("j6", {"status": "queued", "dead_lettered_at": T0})  # failed, then sent again

        counts = await store.tenant_counts(None, T0 - timedelta(hours=24))
        assert counts["t1"] == TenantCounts(
            devices=2, failed=1, dead_lettered=1, unfinished={"queued": 1, "parked": 1}
        )
        assert counts["t2"] == TenantCounts(devices=1, failed=0, dead_lettered=1, unfinished={"queued": 1})
        assert set(await store.tenant_counts(["t2", "t3"], T0)) == {"t2"}

    async def test_a_tenant_is_saved_replaced_and_listed(self, store: GatewayStore) -> None:
        assert await store.tenant("t1") is None
        await store.save_tenant(TenantSettings(tenant_id="t1", display_name="one"))
        await store.save_tenant(TenantSettings(tenant_id="t1", display_name="One", revision=2))
        await store.save_tenant(TenantSettings(tenant_id="t2"))
        found = await store.tenant("t1")
        assert found is not None and (found.display_name, found.revision) == ("One", 2)
        assert sorted(t.tenant_id for t in await store.all_tenants()) == ["t1", "t2"]
        digests = sorted(await store.tenant_digests(), key=lambda d: d.tenant_id)
        assert [(d.tenant_id, d.display_name, d.oauth_enabled) for d in digests] == [
            ("t1", "One", False),
            ("t2", "", False),
        ]

    async def test_a_device_is_found_changed_and_listed_without_its_secret_hash(
        self, store: GatewayStore
    ) -> None:
        await store.save_device("t1", "d2", "Floor 2", "hash-2", T0)
        await store.save_device("t1", "d1", "Floor 1", "hash-1", T0, ["192.0.2.0/24"], "internet_fax_tx")
        await store.save_device("t2", "d3", "Elsewhere", "hash-3", T0)
        found = await store.device("t1", "d1")
        assert found is not None and await store.device("t2", "d1") is None
        assert (found["tenant_id"], found["secret_hash"], found["disabled"]) == ("t1", "hash-1", False)
        assert (found["allow_cidrs"], found["smtp_function"]) == (["192.0.2.0/24"], "internet_fax_tx")
        changed = await store.update_device("t1", "d1", {"disabled": True, "secret_hash": "hash-1b"})
        assert changed is not None and changed["disabled"] is True and changed["secret_hash"] == "hash-1b"
        listed = await store.list_devices("t1")
        assert [d["device_id"] for d in listed] == ["d1", "d2"] and all(
            "secret_hash" not in d for d in listed
        )
        assert await store.update_device("t1", "nobody", {"disabled": True}) is None
        assert await store.update_device("t2", "d1", {"disabled": True}) is None

    async def test_a_devices_user_lists_are_bounded_and_a_logout_or_reset_empties_both(
        self, store: GatewayStore
    ) -> None:
        await store.save_device("t1", "d1", "Floor 1", "hash-1", T0)
        assert await store.add_session_user("t1", "d1", "a@t1.example", 2) is True
        assert await store.add_session_user("t1", "d1", "a@t1.example", 2) is True, "listed once"
        assert await store.add_session_user("t1", "d1", "b@t1.example", 2) is True
        assert await store.add_session_user("t1", "d1", "c@t1.example", 2) is False, "full"
        assert await store.add_session_user("t1", "d1", "b@t1.example", 2) is True, "still listed"
        assert await store.add_session_user("t1", "d1", "a@t1.example", 2, signed_in=True) is True
        assert await store.add_session_user("t2", "d1", "a@t1.example", 2) is False, "no such device"
        found = await store.device("t1", "d1")
        assert found is not None and found["session_users"] == ["a@t1.example", "b@t1.example"]
        assert found["signed_in_users"] == ["a@t1.example"]
        await store.remove_session_users("t1", "d1", ["a@t1.example"])
        found = await store.device("t1", "d1")
        assert found is not None and (found["session_users"], found["signed_in_users"]) == (
            ["b@t1.example"],
            [],
        )

    async def test_device_ids_are_per_tenant(self, store: GatewayStore) -> None:
        await store.save_device("t1", "mfp", "One", "hash-1", T0)
        await store.save_device("t2", "mfp", "Two", "hash-2", T0)
        await store.save_device("t1", "mfp", "One again", "hash-1b", T0)
        one, two = await store.device("t1", "mfp"), await store.device("t2", "mfp")
        assert one is not None and two is not None
        assert (one["name"], one["secret_hash"], two["name"], two["secret_hash"]) == (
            "One again",
            "hash-1b",
            "Two",
            "hash-2",
        )
        named = await store.devices_named("mfp")
        assert sorted((d["tenant_id"], d["secret_hash"]) for d in named) == [
            ("t1", "hash-1b"),
            ("t2", "hash-2"),
        ]
        await store.update_device("t2", "mfp", {"disabled": True})
        assert (await store.device("t1", "mfp") or {}).get("disabled") is False

    async def test_only_devices_with_an_allowlist_can_be_found_by_address(self, store: GatewayStore) -> None:
        await store.save_device("t1", "d1", "", "hash-1", T0, ["192.0.2.0/24"])
        await store.save_device("t1", "d2", "", "hash-2", T0)
        listed = await store.devices_with_allowlist()
        assert [d["device_id"] for d in listed] == ["d1"] and "secret_hash" not in listed[0]

    async def test_api_keys_are_kept_listed_oldest_first_and_deleted(self, store: GatewayStore) -> None:
        await store.save_api_key(api_key("k2", T0 + timedelta(minutes=1)))
        await store.save_api_key(api_key("k1", T0))
        found = await store.api_key("k1")
        assert found is not None
        assert (found.role, found.tenant_ids, found.hash_key, found.secret_hash) == (
            Role.FLEET_ADMIN,
            ("t1", "t2"),
            HashKey.API,
            "h0",
        )
        assert [k.key_id for k in await store.list_api_keys()] == ["k1", "k2"]
        assert await store.delete_api_key("k1") is True and await store.delete_api_key("k1") is False
        assert await store.api_key("k1") is None

    async def test_a_key_is_hashed_again_only_if_its_hash_is_still_the_old_one(
        self, store: GatewayStore
    ) -> None:
        await store.save_api_key(
            StoredApiKey("k1", "old", Role.OPERATOR, None, "device-made", HashKey.DEVICE, T0)
        )
        assert await store.rehash_api_key("k1", "not-the-hash", "api-made", HashKey.API) is False
        assert await store.rehash_api_key("k1", "device-made", "api-made", HashKey.API) is True
        assert await store.rehash_api_key("k1", "device-made", "api-made-again", HashKey.API) is False
        found = await store.api_key("k1")
        assert found is not None and (found.secret_hash, found.hash_key, found.tenant_ids) == (
            "api-made",
            HashKey.API,
            None,
        )

    async def test_a_job_id_is_recorded_once_and_forgotten(self, store: GatewayStore) -> None:
        assert await store.record_job(job("j1")) is True
        assert await store.record_job(job("j1", tenant_id="t2")) is False
        found = await store.job("j1")
        assert found is not None and found["tenant_id"] == "t1"
        await store.forget_job("j1")
        assert await store.job("j1") is None

    async def test_a_job_is_marked_whatever_its_status(self, store: GatewayStore) -> None:
        await store.record_job(job("j1", status="sent"))
        await store.mark_job("j1", {"unconfirmed": ["j1/a/0"]})
        await store.mark_job("absent", {"unconfirmed": ["x"]})
        found = await store.job("j1")
        assert found is not None and (found["status"], found["unconfirmed"]) == ("sent", ["j1/a/0"])
        await store.mark_job("j1", {"unconfirmed": None})
        found = await store.job("j1")
        assert found is not None and found["unconfirmed"] is None and await store.job("absent") is None

    async def test_a_job_status_only_moves_forward(self, store: GatewayStore) -> None:
        await store.record_job(job("j1"))
        await store.record_job(job("j2"))
        later = T0 + timedelta(minutes=1)
        await store.update_job_statuses(
            [
                StatusUpdate("j1", "deferred", later, {"smtp_reply": "421 4.3.0 busy"}),
                StatusUpdate("j1", "sent", later, {"message_id": "<j1@fleetmail>", "sender": "a@b.example"}),
                StatusUpdate("j1", "deferred", later, {"detail": "a late one"}),
                StatusUpdate("j2", "failed", later, {"reason_code": "authentication_failed"}),
                StatusUpdate("nobody", "sent", later, {}),
            ]
        )
        first, second = await store.job("j1"), await store.job("j2")
        assert first is not None and second is not None
        assert first["status"] == "sent" and first["message_id"] == "<j1@fleetmail>"
        assert "detail" not in first and first["smtp_reply"] == "421 4.3.0 busy"
        assert second["status"] == "failed" and second["reason_code"] == "authentication_failed"
        await store.update_job_statuses([])

    async def test_a_requeued_job_starts_over(self, store: GatewayStore) -> None:
        await store.record_job(job("j1"))
        await store.update_job_statuses(
            [
                StatusUpdate(
                    "j1", "failed", T0, {"detail": "dead", "reason_code": "x", "sender": "a@b.example"}
                )
            ]
        )
        await store.requeue_job("j1", T0 + timedelta(hours=1))
        found = await store.job("j1")
        assert found is not None and found["status"] == "queued"
        assert "detail" not in found and "reason_code" not in found and found["sender"] == "a@b.example"

    async def test_jobs_are_searched_newest_first_and_counted_by_status(self, store: GatewayStore) -> None:
        for n in range(4):
            await store.record_job(job(f"j{n}", minutes=n, status="sent" if n % 2 else "queued"))
        await store.record_job(job("other", tenant_id="t2", minutes=9))
        newest = await store.search_jobs("t1", None, None, None, None, 2)
        assert [j["_id"] for j in newest] == ["j3", "j2"]
        older = await store.search_jobs("t1", None, None, None, newest[-1]["submitted_at"], 10)
        assert [j["_id"] for j in older] == ["j1", "j0"]
        assert [j["_id"] for j in await store.search_jobs("t1", "sent", "d1", "scan_to_email", None, 10)] == [
            "j3",
            "j1",
        ]
        assert await store.search_jobs("t1", None, "nobody", None, None, 10) == []
        assert await store.job_counts("t1", T0 + timedelta(minutes=1)) == {"sent": 2, "queued": 1}
        since = T0 + timedelta(minutes=1)
        window = await store.search_jobs("t1", None, None, None, T0 + timedelta(minutes=3), 10, since=since)
        assert [j["_id"] for j in window] == ["j2", "j1"]

    async def test_a_job_keeps_its_newest_events_as_its_timeline(self, store: GatewayStore) -> None:
        await store.record_job(job("j1"))
        deferred = [
            StatusUpdate("j1", "deferred", T0 + timedelta(minutes=n), {}, {"kind": "deferred", "attempt": n})
            for n in range(1, TIMELINE_LENGTH + 3)
        ]
        sent_at = T0 + timedelta(hours=1)
        sent = StatusUpdate(
            "j1", "sent", sent_at, {}, {"kind": "sent", "at": sent_at, "smtp_reply": "250 OK"}
        )
        late = StatusUpdate("j1", "deferred", sent_at, {}, {"kind": "deferred", "attempt": 99})
        await store.update_job_statuses([*deferred, sent, late])
        found = await store.job("j1")
        assert found is not None and len(found["timeline"]) == TIMELINE_LENGTH
        last = found["timeline"][-1]
        assert (last["kind"], last["smtp_reply"], last["at"].replace(tzinfo=UTC)) == (
            "sent",
            "250 OK",
            sent_at,
        )
        assert found["timeline"][0]["attempt"] == 4, "the oldest are dropped; nothing after sent"
        await store.requeue_job("j1", sent_at)
        found = await store.job("j1")
        assert found is not None and found["timeline"][-1]["kind"] == "resent"
