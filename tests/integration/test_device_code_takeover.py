"""A device-code sign-in outlives the token-service replica that was polling it.

This proves the wiring (a killed process, MongoDB, the periodic check); the takeover rule
itself (not before the grace after a missed poll) is tested with an injected clock in
tests/unit/test_token_acquisition.py.
"""

import os
import signal

from pymongo import AsyncMongoClient

from tests.utils import eventually
from tests.utils.tenants import new_tenant


async def test_a_sign_in_survives_the_death_of_its_polling_replica(stack, emulator_http, admin) -> None:
    replica = await stack.add_replica("token-service")
    mongo: AsyncMongoClient = AsyncMongoClient(stack.mongodb_uri)
    acquisitions = mongo["fleetmail_tokens"]["acquisitions"]
    try:
        tenant_id, address = await new_tenant(admin)
        # Requests are shared between replicas: start sign-ins until the new replica polls one.
        for _ in range(16):
            started = (await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")).json()
            record = await acquisitions.find_one({"_id": started["acquisition_id"]})
            if f"-{replica.process.pid}-" in record["poller"]["owner"]:
                break
        else:
            raise AssertionError("the new replica never took a sign-in")

        os.killpg(replica.process.pid, signal.SIGKILL)  # no goodbye: the lease just runs out
        await replica.process.wait()
        # The user finishes signing in after the replica died.
        approved = await emulator_http.post(
            f"{stack.microsoft_url}/_emulator/device-codes/approve",
            json={"user_code": started["user_code"], "user": address},
        )
        assert approved.status_code == 200

        async def finished() -> dict | None:
            status = (
                await admin.get(f"/v1/admin/tenants/{tenant_id}/acquisitions/{started['acquisition_id']}")
            ).json()
            return status if status["state"] != "pending" else None

        status = await eventually(finished, within=30, what="another replica to finish the sign-in")
        assert status["state"] == "succeeded", status
        record = await acquisitions.find_one({"_id": started["acquisition_id"]})
        assert f"-{replica.process.pid}-" not in record["poller"]["owner"]
        [grant] = (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()["grants"]
        assert grant["status"] == "active" and grant["principal"]["address"] == address
    finally:
        # The sign-ins started only to find one on the new replica: end them, so their
        # polls stop (as a user declining on the sign-in page does).
        for pending in (
            await emulator_http.get(f"{stack.microsoft_url}/_emulator/device-codes/pending")
        ).json():
            await emulator_http.post(
                f"{stack.microsoft_url}/_emulator/device-codes/decline",
                json={"user_code": pending["user_code"]},
            )
        await mongo.close()
        await stack.stop_part(replica)
