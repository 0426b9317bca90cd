"""The `fleetmail` command line against the running gateway."""

import asyncio
import uuid

from tests.utils.cli import cli


async def test_an_administrator_runs_the_fleet_from_the_terminal(stack, emulator_http) -> None:
    tenant_id = f"cli-{uuid.uuid4().hex[:6]}"
    admin_address = f"admin@{tenant_id}.example"
    run = lambda *args: asyncio.to_thread(cli, stack, *args)  # noqa: E731

    saved = await run("tenants", "set", tenant_id, "--oauth", "--administrator", admin_address)
    assert saved.exit_code == 0 and "saved" in saved.output, saved.output
    assert tenant_id in (await run("tenants", "list")).output

    added = await run("devices", "add", tenant_id, f"{tenant_id}-mfp", "--name", "Floor 1")
    assert added.exit_code == 0 and "secret (shown once)" in added.output
    assert (await run("devices", "disable", tenant_id, f"{tenant_id}-mfp")).exit_code == 0
    assert "disabled" in (await run("devices", "list", tenant_id)).output

    pending = f"{stack.microsoft_url}/_emulator/device-codes/pending"
    # Codes other tests left pending are not this sign-in's: approve only the new one.
    earlier = {code["user_code"] for code in (await emulator_http.get(pending)).json()}

    async def approve_when_shown() -> None:
        # As long as the CLI waits (--wait-s 60): the code shows once token-service has it.
        for _ in range(300):
            for code in (await emulator_http.get(pending)).json():
                if code["user_code"] in earlier:
                    continue
                await emulator_http.post(
                    f"{stack.microsoft_url}/_emulator/device-codes/approve",
                    json={"user_code": code["user_code"], "user": admin_address},
                )
                return
            await asyncio.sleep(0.2)

    acquired, _ = await asyncio.gather(
        run("tokens", "acquire", tenant_id, "--wait-s", "60"), approve_when_shown()
    )
    assert acquired.exit_code == 0, acquired.output
    assert "enter the code" in acquired.output and "Acquired" in acquired.output
    status = await run("tokens", "status", tenant_id)
    assert admin_address in status.output and "Acquired" in status.output

    assert "no open alerts" in (await run("alerts", tenant_id)).output
    health = await run("status")
    assert health.exit_code == 0 and "ready" in health.output and tenant_id in health.output
    # The queues' lag, as on the dashboard.
    assert "mail-service" in health.output and "notifier-mail" in health.output


def test_errors_are_one_clear_line(stack) -> None:
    refused = cli(stack, "tenants", "set", f"cli-{uuid.uuid4().hex[:6]}", "--provider", "yahoo")
    assert refused.exit_code == 1 and "error:" in refused.output and "Traceback" not in refused.output
    unreachable = cli(stack, "tenants", "list", url="http://127.0.0.1:9")
    assert unreachable.exit_code == 2 and "cannot reach job-gateway" in unreachable.output
