"""schemathesis against job-gateway's OpenAPI document, as an API consumer would use it: no
generated input gets a 5xx, a status code the operation does not document, or a content
type the response does not document."""

import asyncio
import uuid

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from schemathesis.checks import content_type_conformance, not_a_server_error, status_code_conformance
from schemathesis.core.failures import FailureGroup

EXAMPLES_PER_OPERATION = 10  # derandomized: the same examples every run
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]


@pytest.mark.timeout(300)
async def test_generated_requests_get_only_documented_answers_and_never_a_server_error(stack, admin) -> None:
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

    def run() -> tuple[list[str], dict[int, int], set[str]]:
        schema = schemathesis.openapi.from_url(f"{stack.gateway_url}/openapi.json")
        failures: dict[tuple[str, int, str], str] = {}  # one example per operation, status and failure
        statuses: dict[int, int] = {}
        content_types: set[str] = set()
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
                content_type = (response.headers.get("content-type") or [""])[0]
                content_types.add(content_type.split(";")[0])
                try:
                    case.validate_response(response, checks=CHECKS)
                except FailureGroup as group:
                    titles = "; ".join(sorted({failure.title for failure in group.exceptions}))
                    failures.setdefault(
                        (operation.label, response.status_code, titles),
                        f"{case.method} {case.formatted_path} -> {response.status_code} "
                        f"{content_type}: {titles}: {response.text[:160]}",
                    )

            check()
        assert operations >= 30, operations
        return list(failures.values()), statuses, content_types

    failures, statuses, content_types = await asyncio.to_thread(run)
    assert failures == [], "\n".join(failures[:20])
    # The inputs reached the handlers, not only authentication and validation, and the
    # checks saw errors as well as successes.
    assert sum(statuses.values()) >= 30 * 5 and any(200 <= code < 300 for code in statuses), statuses
    assert {404, 422} <= set(statuses), statuses
    assert {"application/json", "application/problem+json"} <= content_types, content_types
