"""Size limits per provider, a tenant's own CA, and Gmail's 334 challenge through mail-service."""

import hashlib
import uuid

from fleetmail_devkit.probes import device_panel, smtp_emulator

from tests.utils import eventually
from tests.utils.jobs import final_status, submit
from tests.utils.tenants import app_only_tenant


async def test_a_message_over_the_provider_limit_fails_before_sending(stack, admin) -> None:
    # The test stack sets Gmail's limit to 5 MB; 4 MB of scan is about 5.4 MB as sent.
    tenant_id = f"big-{uuid.uuid4().hex[:8]}"
    await admin.put(
        f"/v1/admin/tenants/{tenant_id}",
        json={
            "tenant_id": tenant_id,
            "oauth_enabled": True,
            "provider": "google",
            "administrator_address": f"admin@{tenant_id}.example",
        },
    )
    async with device_panel(stack, tenant_id) as panel:
        scan = ("scan.pdf", b"%PDF" + b"\0" * 4_000_000, "application/pdf")
        job_id = await submit(
            panel, {"function": "scan_to_email", "to": ["x@fabrikam.example"]}, {"files": scan}
        )
        status = await final_status(panel, job_id)
    assert status["status"] == "failed" and status["reason_code"] == "message_too_large", status
    assert "5.0 MB limit for google" in status["detail"]


async def test_a_tenant_smtp_server_under_a_private_ca(stack, admin, emulator_http) -> None:
    """An on-premises server whose certificate comes from the tenant's own CA."""
    async with smtp_emulator(
        stack, "microsoft", stack.data_dir / f"private-ca-{uuid.uuid4().hex[:6]}"
    ) as private:
        tenant_id = f"onprem-{uuid.uuid4().hex[:8]}"
        address = f"scanner@{tenant_id}.example"
        await emulator_http.post(
            f"{private.control_url}/_emulator/mailboxes", json={"address": address, "password": "relay-pw"}
        )
        smtp = {"host": "127.0.0.1", "port": private.port}
        await admin.put(
            f"/v1/admin/tenants/{tenant_id}",
            json={"tenant_id": tenant_id, "administrator_address": address, "smtp": smtp},
        )
        await admin.put(
            f"/v1/admin/tenants/{tenant_id}/credentials",
            json={"smtp_username": address, "smtp_password": "relay-pw"},
        )
        async with device_panel(stack, tenant_id) as panel:
            untrusted = await final_status(
                panel, await submit(panel, {"function": "scan_to_email", "to": ["x@y.example"]})
            )
            assert untrusted["status"] == "failed" and "not trusted" in untrusted["detail"], untrusted
            assert "smtp.ca_pem" in untrusted["remedy"]

            smtp["ca_pem"] = private.ca_file.read_text()
            await admin.put(
                f"/v1/admin/tenants/{tenant_id}",
                json={"tenant_id": tenant_id, "administrator_address": address, "smtp": smtp},
            )

            async def sent_under_the_tenants_ca() -> dict:
                # The settings reach mail-service through the KV watch: a job submitted before
                # they arrive still fails as untrusted, one after is sent.
                status = await final_status(
                    panel, await submit(panel, {"function": "scan_to_email", "to": ["x@y.example"]})
                )
                assert status["status"] == "sent", status
                return status

            await eventually(sent_under_the_tenants_ca, within=20, what="a job sent under the tenant's CA")
        accepted = (await emulator_http.get(f"{private.control_url}/_emulator/messages")).json()
        assert [m["auth_user"] for m in accepted] == [address]


async def test_gmail_challenge_makes_mail_service_refresh_once_and_deliver(
    stack, admin, emulator_http, service_account
) -> None:
    async with smtp_emulator(stack, "gmail") as gmail:
        tenant_id, address = await app_only_tenant(admin, stack, "google")
        await admin.put(
            f"/v1/admin/tenants/{tenant_id}",
            json={
                "tenant_id": tenant_id,
                "oauth_enabled": True,
                "provider": "google",
                "administrator_address": address,
                "smtp": {"host": "127.0.0.1", "port": gmail.port},
                "identity": {"app_only": True},
            },
        )
        key = await service_account(f"{tenant_id}.example")
        await admin.put(f"/v1/admin/tenants/{tenant_id}/credentials", json={"google_service_account": key})
        async with device_panel(stack, tenant_id) as panel:
            first = await final_status(
                panel, await submit(panel, {"function": "scan_to_email", "to": ["x@y.example"]})
            )
            assert first["status"] == "sent", first
            # Google revokes the access token mail-service holds; Gmail answers the next AUTH
            # with its 334 JSON challenge.
            issued = (await emulator_http.get(f"{stack.google_url}/_emulator/issued")).json()["access_tokens"]
            held = issued[-1]
            await emulator_http.post(f"{stack.google_url}/revoke", data={"token": held})
            # A new connection is needed for Gmail to check the token again: the pool's idle one
            # is dropped by a fault on the next MAIL.
            await emulator_http.post(
                f"{gmail.control_url}/_emulator/faults",
                json={
                    "stage": "mail",
                    "code": 421,
                    "text": "4.7.0 Try again later, closing connection.",
                    "count": 1,
                },
            )
            second = await final_status(
                panel, await submit(panel, {"function": "scan_to_email", "to": ["x@y.example"]})
            )
        assert second["status"] == "sent", second
        stats = (await emulator_http.get(f"{gmail.control_url}/_emulator/stats")).json()
        assert stats["auth_failures"] >= 1
        issued_after = (await emulator_http.get(f"{stack.google_url}/_emulator/issued")).json()[
            "access_tokens"
        ]
        # Refreshed once: exactly one new token for this sender since the revoked one.
        new_for_sender = [
            token
            for token in issued_after[len(issued) :]
            if (await emulator_http.get(f"{stack.google_url}/tokeninfo", params={"access_token": token}))
            .json()
            .get("email", "")
            .lower()
            == address.lower()
        ]
        assert len(new_for_sender) == 1, new_for_sender
        accepted = (await emulator_http.get(f"{gmail.control_url}/_emulator/messages")).json()
        assert (
            accepted[-1]["token_sha256"]
            == hashlib.sha256(issued_after[-1].encode()).hexdigest()
            != hashlib.sha256(held.encode()).hexdigest()
        )
