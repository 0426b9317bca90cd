"""schemathesis against job-gateway's OpenAPI document: no generated input gets a 5xx."""

import asyncio
import uuid

import httpx
import hypothesis
import schemathesis
from hypothesis import HealthCheck

EXAMPLES_PER_OPERATION = 15


async def test_no_generated_request_gets_a_server_error(stack, admin) -> None:
    # A real tenant and device, so generated requests also reach past authentication.
    tenant_id = f"fuzz-{uuid.uuid4().hex[:6]}"
    await admin.put(
        f"/v1/admin/tenants/{tenant_id}",
        json={
            "tenant_id": tenant_id,
            "oauth_enabled": True,
            "administrator_address": f"a@{tenant_id}.example",
        },
    )
    device = (
        await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": f"fz-{tenant_id}"})
    ).json()
    admin_headers = {"Authorization": f"Bearer {stack.admin_api_key()}"}
    basic = httpx.BasicAuth(device["device_id"], device["secret"])
    device_headers = {"Authorization": basic._auth_header}

    def run() -> list[str]:
        schema = schemathesis.openapi.from_url(f"{stack.gateway_url}/openapi.json")
        failures: list[str] = []
        statuses: dict[int, int] = {}
        operations = 0
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1
            device_route = operation.path.startswith(("/v1/jobs", "/v1/device"))
            headers = device_headers if device_route else admin_headers

            @hypothesis.settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis.given(case=operation.as_strategy())
            def check(case: schemathesis.Case) -> None:
                if "tenant_id" in (case.path_parameters or {}) and case.path_parameters["tenant_id"] == "":
                    return
                response = case.call(base_url=stack.gateway_url, headers=headers, timeout=30)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}"
                    )

            check()
        assert operations >= 20, operations
        # The inputs reached the handlers, not only authentication and validation.
        assert sum(statuses.values()) >= operations * 5 and any(200 <= code < 300 for code in statuses), (
            statuses
        )
        return failures

    failures = await asyncio.to_thread(run)
    assert failures == []
