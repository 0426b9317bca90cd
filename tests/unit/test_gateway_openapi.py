"""job-gateway's OpenAPI document tells the truth: every error an operation can answer is
documented as problem+json with the `Problem` schema, and the job part is described."""

from __future__ import annotations

from typing import Any

import pytest
from job_gateway.app import build_app
from job_gateway.settings import GatewaySettings
from pydantic import SecretStr

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    settings = GatewaySettings(
        admin_api_key=SecretStr("owner"),
        device_secret_key=SecretStr("device-key"),
        api_key_hash_key=SecretStr("api-key"),
    )
    return build_app(settings).openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in document["paths"].items() for method, op in ops.items()]


def test_every_error_response_is_a_problem(document: dict[str, Any]) -> None:
    assert len(operations(document)) >= 30
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400 or path == "/oauth/callback" or path == "/readyz":
                continue
            assert response["content"] == {"application/problem+json": {"schema": PROBLEM_REF}}, (
                method,
                path,
                status,
            )


def test_fastapis_validation_error_schema_is_gone(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["Problem"]["required"]) == {"type", "title", "status", "detail", "instance"}
    assert "HTTPValidationError" not in str(document)


def test_who_may_call_each_operation_is_documented(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        if path.startswith("/v1/"):
            assert "401" in operation["responses"], (method, path)
            assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
        if path.startswith("/v1/admin/tenants/{tenant_id}"):
            assert "403" in operation["responses"], (method, path)


def test_a_job_submission_documents_every_refusal_and_its_json_part(document: dict[str, Any]) -> None:
    submit = document["paths"]["/v1/jobs"]["post"]
    assert set(submit["responses"]) == {
        "202",
        "400",
        "401",
        "403",
        "408",
        "413",
        "415",
        "422",
        "429",
        "503",
        "507",
    }
    assert "Retry-After" in submit["responses"]["429"]["headers"]
    body = submit["requestBody"]["content"]["multipart/form-data"]
    assert body["encoding"] == {"job": {"contentType": "application/json"}}
    form = document["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[-1]]
    assert form["properties"]["job"]["allOf"] == [{"$ref": "#/components/schemas/JobSubmission"}]
    submission = document["components"]["schemas"]["JobSubmission"]
    assert {"function", "job_id", "to", "subject"} <= set(submission["properties"])
    assert submission["properties"]["function"]["$ref"] == "#/components/schemas/JobFunction"


def test_the_oauth_callback_answers_pages(document: dict[str, Any]) -> None:
    for method in ("get", "post"):
        callback = document["paths"]["/oauth/callback"][method]
        assert all("text/html" in r["content"] for r in callback["responses"].values())
    operation_ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(operation_ids) == len(set(operation_ids))
