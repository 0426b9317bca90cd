"""Contract suites for token-service's stores: every `GrantStore` and `AcquisitionStore` must
pass them — the in-memory fakes (`tests/unit/test_token_stores_fake.py`) and the MongoDB
adapters (`tests/component/test_token_stores_mongo.py`).

A subclass provides the `store` fixture. Times are whole seconds (MongoDB keeps milliseconds).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fleetmail_contracts.tokens import (
    AcquisitionFlow,
    AcquisitionState,
    GrantStatus,
    Principal,
    PrincipalKind,
    Provider,
)
from token_service.model import IssuedToken
from token_service.ports import AcquisitionStore, GrantStore

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)
ADMIN = Principal(tenant_id="t1", kind=PrincipalKind.ADMINISTRATOR, address="admin@t1.example")
USER = Principal(tenant_id="t1", kind=PrincipalKind.USER, address="User@T1.example")
OTHER = Principal(tenant_id="t2", kind=PrincipalKind.ADMINISTRATOR, address="admin@t2.example")


def issued(n: int, at: datetime = NOW, refresh: bool = True) -> IssuedToken:
    return IssuedToken(f"access-{n}", at, at + timedelta(hours=1), f"refresh-{n}" if refresh else None)


async def acquire(store: GrantStore, principal: Principal = ADMIN, n: int = 1, at: datetime = NOW) -> None:
    await store.replace(
        principal,
        Provider.MICROSOFT,
        issued(n, at),
        ("SMTP.Send",),
        AcquisitionFlow.DEVICE_CODE,
        "https://login.example/contoso",
        "client-1",
        at + timedelta(days=90),
    )


async def acquire_legacy(store: GrantStore, principal: Principal, client_id: str | None = None) -> None:
    """A grant as the first release stored it: no authority."""
    await store.replace(
        principal, Provider.MICROSOFT, issued(1), (), AcquisitionFlow.DEVICE_CODE, None, client_id, None
    )


class GrantStoreContract:
    @pytest.fixture
    async def store(self) -> GrantStore:
        raise NotImplementedError

    async def test_the_fleet_summary_has_each_administrator_grant_and_the_users_to_sign_in(
        self, store: GrantStore
    ) -> None:
        stale = Principal(tenant_id="t1", kind=PrincipalKind.USER, address="stale@t1.example")
        for principal in (ADMIN, USER, stale, OTHER):
            await acquire(store, principal)
        await store.set_status(stale, GrantStatus.REAUTHORIZATION_REQUIRED, detail="revoked")
        await store.set_status(OTHER, GrantStatus.REAUTHORIZATION_REQUIRED, detail="revoked")
        every = await store.fleet_summary(None)
        assert sorted((a.tenant_id, a.address, a.status) for a in every.administrators) == [
            ("t1", ADMIN.address, GrantStatus.ACTIVE),
            ("t2", OTHER.address, GrantStatus.REAUTHORIZATION_REQUIRED),
        ]
        assert {a.tenant_id: a.predicted_death_at for a in every.administrators}["t1"] == NOW + timedelta(
            days=90
        )
        assert [(w.tenant_id, w.count) for w in every.users_waiting] == [("t1", 1)]
        only_t2 = await store.fleet_summary(["t2"])
        assert [a.tenant_id for a in only_t2.administrators] == ["t2"] and only_t2.users_waiting == ()

    async def test_a_grant_without_an_authority_is_stamped_once(self, store: GrantStore) -> None:
        await acquire_legacy(store, ADMIN)
        await acquire_legacy(store, USER, client_id="client-1")
        assert await store.stamp_issuer(ADMIN, "https://login.example/contoso", "client-1")
        assert await store.stamp_issuer(USER, "https://login.example/contoso", "client-1")
        assert not await store.stamp_issuer(ADMIN, "https://login.example/fabrikam", "client-2")
        for principal in (ADMIN, USER):
            grant = await store.get(principal)
            assert grant is not None and grant.refresh_token == "refresh-1"
            assert (grant.authority, grant.client_id) == ("https://login.example/contoso", "client-1")

    async def test_a_grant_of_another_client_or_with_an_authority_is_not_stamped(
        self, store: GrantStore
    ) -> None:
        await acquire_legacy(store, USER, client_id="client-0")
        await acquire(store, ADMIN)
        assert not await store.stamp_issuer(USER, "https://login.example/contoso", "client-1")
        assert not await store.stamp_issuer(ADMIN, "https://login.example/fabrikam", "client-1")
        user, admin = await store.get(USER), await store.get(ADMIN)
        assert user is not None and (user.authority, user.client_id) == (None, "client-0")
        assert admin is not None and admin.authority == "https://login.example/contoso"

    async def test_an_acquired_grant_reads_back_whole(self, store: GrantStore) -> None:
        assert await store.get(ADMIN) is None
        await acquire(store)
        grant = await store.get(ADMIN)
        assert grant is not None
        assert (grant.principal, grant.provider, grant.status) == (
            ADMIN,
            Provider.MICROSOFT,
            GrantStatus.ACTIVE,
        )
        assert (grant.refresh_token, grant.access_token) == ("refresh-1", "access-1")
        assert grant.access_issued_at == NOW and grant.access_expires_at == NOW + timedelta(hours=1)
        assert grant.acquired_at == NOW and grant.predicted_death_at == NOW + timedelta(days=90)
        assert grant.scopes == ("SMTP.Send",) and grant.flow is AcquisitionFlow.DEVICE_CODE
        assert (grant.authority, grant.client_id) == ("https://login.example/contoso", "client-1")
        assert grant.lease_owner is None

    async def test_a_user_grant_is_found_whatever_the_case_of_the_address(self, store: GrantStore) -> None:
        await acquire(store, USER)
        same = Principal(tenant_id="t1", kind=PrincipalKind.USER, address="user@t1.EXAMPLE")
        assert (await store.get(same)) is not None

    async def test_a_new_sign_in_replaces_the_grant_and_moves_its_version_on(self, store: GrantStore) -> None:
        await acquire(store, n=1)
        first = await store.get(ADMIN)
        await acquire(store, n=2)
        second = await store.get(ADMIN)
        assert first is not None and second is not None
        assert second.refresh_token == "refresh-2" and second.version > first.version
        assert len(await store.list_tenant("t1")) == 1

    async def test_an_app_only_grant_has_no_refresh_token(self, store: GrantStore) -> None:
        await store.replace(
            ADMIN,
            Provider.MICROSOFT,
            issued(1, refresh=False),
            (),
            AcquisitionFlow.APP_ONLY,
            None,
            None,
            None,
        )
        grant = await store.get(ADMIN)
        assert grant is not None and grant.refresh_token is None and grant.access_token == "access-1"

    async def test_the_lease_is_taken_once_and_released_only_by_its_owner(self, store: GrantStore) -> None:
        await acquire(store)
        assert await store.take_lease(ADMIN, "replica-a", NOW, TTL)
        assert not await store.take_lease(ADMIN, "replica-b", NOW, TTL)
        await store.release_lease(ADMIN, "replica-b")
        assert not await store.take_lease(ADMIN, "replica-b", NOW, TTL)
        await store.release_lease(ADMIN, "replica-a")
        assert await store.take_lease(ADMIN, "replica-b", NOW, TTL)

    async def test_an_expired_lease_is_taken_over(self, store: GrantStore) -> None:
        await acquire(store)
        assert await store.take_lease(ADMIN, "replica-a", NOW, TTL)
        assert not await store.take_lease(ADMIN, "replica-b", NOW + TTL - timedelta(seconds=1), TTL)
        assert await store.take_lease(ADMIN, "replica-b", NOW + TTL + timedelta(seconds=1), TTL)
        grant = await store.get(ADMIN)
        assert grant is not None and grant.lease_owner == "replica-b"

    async def test_there_is_no_lease_on_a_grant_that_does_not_exist(self, store: GrantStore) -> None:
        assert not await store.take_lease(ADMIN, "replica-a", NOW, TTL)

    async def test_a_refresh_is_stored_and_releases_the_lease(self, store: GrantStore) -> None:
        await acquire(store)
        assert await store.take_lease(ADMIN, "replica-a", NOW, TTL)
        read = await store.get(ADMIN)
        assert read is not None
        later = NOW + timedelta(minutes=50)
        assert await store.record_refresh(read, issued(2, later), later + timedelta(days=90), "replica-a")
        grant = await store.get(ADMIN)
        assert grant is not None and grant.version > read.version
        assert (grant.access_token, grant.refresh_token) == ("access-2", "refresh-2")
        assert grant.last_refreshed_at == later and grant.predicted_death_at == later + timedelta(days=90)
        assert grant.acquired_at == NOW
        assert await store.take_lease(ADMIN, "replica-b", later, TTL)

    async def test_a_refresh_without_a_new_refresh_token_keeps_the_old_one(self, store: GrantStore) -> None:
        await acquire(store)
        read = await store.get(ADMIN)
        assert read is not None
        assert await store.record_refresh(read, issued(2, refresh=False), None, "replica-a")
        grant = await store.get(ADMIN)
        assert grant is not None and (grant.access_token, grant.refresh_token) == ("access-2", "refresh-1")

    async def test_the_compare_and_set_refuses_a_stale_writer(self, store: GrantStore) -> None:
        await acquire(store)
        read = await store.get(ADMIN)
        assert read is not None
        assert await store.record_refresh(read, issued(2), None, "replica-a")
        assert not await store.record_refresh(read, issued(3), None, "replica-b")
        grant = await store.get(ADMIN)
        assert grant is not None and (grant.access_token, grant.refresh_token) == ("access-2", "refresh-2")

    async def test_a_refresh_read_before_a_new_sign_in_is_refused(self, store: GrantStore) -> None:
        await acquire(store, n=1)
        read = await store.get(ADMIN)
        assert read is not None
        await acquire(store, n=2)
        assert not await store.record_refresh(read, issued(3), None, "replica-a")
        grant = await store.get(ADMIN)
        assert grant is not None and grant.refresh_token == "refresh-2"

    async def test_a_refresh_of_a_deleted_grant_brings_nothing_back(self, store: GrantStore) -> None:
        await acquire(store)
        read = await store.get(ADMIN)
        assert read is not None
        assert await store.delete(ADMIN)
        assert not await store.record_refresh(read, issued(2), None, "replica-a")
        assert await store.get(ADMIN) is None

    async def test_a_grant_that_needs_reauthorization_loses_its_access_token(self, store: GrantStore) -> None:
        await acquire(store)
        assert await store.take_lease(ADMIN, "replica-a", NOW, TTL)
        await store.set_status(ADMIN, GrantStatus.REAUTHORIZATION_REQUIRED, "replica-a")
        grant = await store.get(ADMIN)
        assert grant is not None and grant.status is GrantStatus.REAUTHORIZATION_REQUIRED
        assert grant.access_token is None and grant.refresh_token == "refresh-1"
        assert await store.take_lease(ADMIN, "replica-b", NOW, TTL)
        assert await store.active_principals() == []

    async def test_grants_are_listed_per_tenant(self, store: GrantStore) -> None:
        await acquire(store, ADMIN)
        await acquire(store, USER, n=2)
        await acquire(store, OTHER, n=3)
        listed = {g.principal.address for g in await store.list_tenant("t1")}
        assert listed == {ADMIN.address, USER.address}
        assert [g.principal for g in await store.list_tenant("t2")] == [OTHER]
        assert await store.list_tenant("t3") == []
        assert {p.address for p in await store.active_principals()} == {
            ADMIN.address,
            USER.address,
            OTHER.address,
        }

    async def test_a_grant_is_deleted_once(self, store: GrantStore) -> None:
        await acquire(store)
        await acquire(store, USER, n=2)
        assert await store.delete(ADMIN)
        assert not await store.delete(ADMIN)
        assert await store.get(ADMIN) is None and await store.get(USER) is not None

    async def test_a_status_set_on_a_read_version_says_why_and_loses_to_a_new_sign_in(
        self, store: GrantStore
    ) -> None:
        await acquire(store)
        read = await store.get(ADMIN)
        assert read is not None
        await acquire(store, n=2)  # signed in again meanwhile
        assert not await store.set_status(
            ADMIN, GrantStatus.REAUTHORIZATION_REQUIRED, detail="changed", version=read.version
        )
        fresh = await store.get(ADMIN)
        assert fresh is not None and fresh.status is GrantStatus.ACTIVE
        assert await store.set_status(
            ADMIN, GrantStatus.REAUTHORIZATION_REQUIRED, detail="changed", version=fresh.version
        )
        dead = await store.get(ADMIN)
        assert dead is not None and dead.status_detail == "changed" and dead.view().status_detail == "changed"
        await acquire(store, n=3)
        again = await store.get(ADMIN)
        assert again is not None and again.status_detail is None

    async def test_a_user_grant_unused_since_a_time_is_deleted_and_a_used_one_is_not(
        self, store: GrantStore
    ) -> None:
        busy = Principal(tenant_id="t1", kind=PrincipalKind.USER, address="busy@t1.example")
        await acquire(store, ADMIN)
        await acquire(store, USER, n=2)
        await acquire(store, busy, n=3)
        later = NOW + timedelta(days=10)
        await store.record_use(busy, later)
        await store.record_use(busy, NOW + timedelta(days=1))  # never moves back
        activity = {p.address: at for p, at in await store.user_activity()}
        assert activity == {busy.address: later, USER.address: NOW}
        cutoff = NOW + timedelta(days=5)
        assert not await store.delete_idle(busy, cutoff)
        assert await store.delete_idle(USER, cutoff)
        assert not await store.delete_idle(USER, cutoff)
        assert await store.get(busy) is not None and await store.get(ADMIN) is not None

    async def test_an_expiry_is_announced_once_until_it_is_no_longer_near(self, store: GrantStore) -> None:
        await acquire(store)
        assert await store.announce_expiring(ADMIN, NOW, True)
        assert not await store.announce_expiring(ADMIN, NOW + timedelta(hours=1), True)
        assert not await store.announce_expiring(ADMIN, NOW + timedelta(hours=2), False)
        assert await store.announce_expiring(ADMIN, NOW + timedelta(hours=3), True)


class AcquisitionStoreContract:
    @pytest.fixture
    async def store(self) -> AcquisitionStore:
        raise NotImplementedError

    async def device_flow(self, store: AcquisitionStore, acquisition_id: str = "acq-1") -> None:
        await store.create(
            acquisition_id,
            ADMIN,
            Provider.MICROSOFT,
            AcquisitionFlow.DEVICE_CODE,
            NOW + timedelta(minutes=15),
            flow={"user_code": "ABC", "interval": 5},
            poller=("replica-a", NOW + timedelta(seconds=15)),
        )

    async def test_a_sign_in_is_pending_for_its_own_tenant_only(self, store: AcquisitionStore) -> None:
        await self.device_flow(store)
        status = await store.status("acq-1", "t1", NOW)
        assert status.state is AcquisitionState.PENDING and status.principal == ADMIN
        assert (await store.status("acq-1", "t2", NOW)).state is AcquisitionState.FAILED
        assert (await store.status("nothing", "t1", NOW)).state is AcquisitionState.FAILED

    async def test_a_pending_sign_in_past_its_time_reads_as_expired(self, store: AcquisitionStore) -> None:
        await self.device_flow(store)
        status = await store.status("acq-1", "t1", NOW + timedelta(minutes=16))
        assert status.state is AcquisitionState.EXPIRED and "expired" in (status.detail or "")

    async def test_a_finished_sign_in_says_how_it_ended(self, store: AcquisitionStore) -> None:
        await self.device_flow(store)
        await store.finish("acq-1", AcquisitionState.SUCCEEDED, "Acquired for admin@t1.example")
        status = await store.status("acq-1", "t1", NOW + timedelta(minutes=16))
        assert status.state is AcquisitionState.SUCCEEDED and status.detail == "Acquired for admin@t1.example"
        assert await store.orphaned_device_flows(NOW + timedelta(minutes=1)) == []

    async def test_an_authorization_answer_is_claimed_once_and_before_it_expires(
        self, store: AcquisitionStore
    ) -> None:
        flow = {"code_verifier": "v" * 43, "redirect_uri": "https://gateway.example/oauth/callback"}
        for acquisition_id, state in (("acq-1", "state-1"), ("acq-2", "state-2")):
            await store.create(
                acquisition_id,
                USER,
                Provider.GOOGLE,
                AcquisitionFlow.AUTHORIZATION_CODE,
                NOW + timedelta(minutes=15),
                state,
                flow,
            )
        claimed = await store.claim("state-1", NOW)
        assert claimed is not None and claimed.acquisition_id == "acq-1"
        assert (claimed.principal, claimed.provider, claimed.flow) == (USER, Provider.GOOGLE, flow)
        assert await store.claim("state-1", NOW) is None
        assert await store.claim("made-up", NOW) is None
        assert await store.claim("state-2", NOW + timedelta(minutes=16)) is None

    async def test_the_poller_keeps_its_flow_and_nobody_else_can_renew_it(
        self, store: AcquisitionStore
    ) -> None:
        await self.device_flow(store)
        assert await store.renew_poller("acq-1", "replica-a", NOW + timedelta(seconds=30))
        assert not await store.renew_poller("acq-1", "replica-b", NOW + timedelta(seconds=30))
        assert await store.orphaned_device_flows(NOW + timedelta(seconds=29)) == []
        assert await store.take_over("acq-1", "replica-b", NOW + timedelta(seconds=29), NOW) is None

    async def test_an_orphaned_flow_is_taken_over_by_one_replica(self, store: AcquisitionStore) -> None:
        await self.device_flow(store)
        later = NOW + timedelta(seconds=16)
        assert await store.orphaned_device_flows(later) == ["acq-1"]
        claimed = await store.take_over("acq-1", "replica-b", later, later + timedelta(seconds=5))
        assert claimed is not None and claimed.flow == {"user_code": "ABC", "interval": 5}
        assert await store.take_over("acq-1", "replica-c", later, later + timedelta(seconds=5)) is None
        assert not await store.renew_poller("acq-1", "replica-a", later + timedelta(seconds=15))
        assert await store.renew_poller("acq-1", "replica-b", later + timedelta(seconds=15))

    async def test_a_released_flow_can_be_taken_over_at_once(self, store: AcquisitionStore) -> None:
        await self.device_flow(store)
        await store.release_poller("acq-1", "replica-b", NOW)  # not its poller: no effect
        assert await store.orphaned_device_flows(NOW + timedelta(seconds=1)) == []
        await store.release_poller("acq-1", "replica-a", NOW)
        assert await store.orphaned_device_flows(NOW + timedelta(seconds=1)) == ["acq-1"]

    async def test_an_expired_flow_is_no_orphan(self, store: AcquisitionStore) -> None:
        await self.device_flow(store)
        assert await store.orphaned_device_flows(NOW + timedelta(minutes=16)) == []
