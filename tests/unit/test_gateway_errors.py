"""The two edges of job-gateway's error tree: problem+json over HTTP, replies over SMTP, and
FastAPI's own refusals in the same problem+json shape (in process: no server, no bus)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from job_gateway import errors
from job_gateway.api.deps import current_device
from job_gateway.api.problems import STATUSES, status_of
from job_gateway.app import build_app
from job_gateway.domain import Device
from job_gateway.settings import GatewaySettings
from job_gateway.smtp_listener import smtp_reply
from pydantic import SecretStr

OWNER = "owner-key-for-tests"
PROBLEM = "application/problem+json"


def settings() -> GatewaySettings:
    return GatewaySettings(
        admin_api_key=SecretStr(OWNER),
        device_secret_key=SecretStr("device-key"),
        api_key_hash_key=SecretStr("api-key-hash-key"),
    )


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return build_app(settings())


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # In process, and without the lifespan: nothing connects anywhere.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        yield client


def leaves(cls: type[errors.GatewayError]) -> list[type[errors.GatewayError]]:
    subclasses = cls.__subclasses__()
    return [leaf for sub in subclasses for leaf in leaves(sub)] if subclasses else [cls]


def test_every_error_of_the_tree_has_a_status_and_its_own_code() -> None:
    found = leaves(errors.GatewayError)
    assert len(found) >= 25
    for cls in found:
        assert 400 <= status_of(cls) < 600 and status_of(cls) != 500, cls
    codes = [
        cls.code for cls in found if cls not in (errors.DeviceUnauthorized, errors.AdministratorUnauthorized)
    ]
    assert len(codes) == len(set(codes)), codes
    assert set(STATUSES.values()) == {400, 401, 403, 404, 408, 409, 410, 413, 415, 422, 429, 502, 503, 507}


def test_errors_map_to_the_statuses_and_types_clients_read() -> None:
    expected = {
        errors.TenantNotFound: (404, "tenant-not-found"),
        errors.AcquisitionRefused: (409, "acquisition-refused"),
        errors.DocumentsGone: (410, "documents-gone"),
        errors.AttachmentTooLarge: (413, "attachment-too-large"),
        errors.AttachmentTypeRefused: (415, "attachment-type-refused"),
        errors.SubmissionTooLarge: (413, "submission-too-large"),
        errors.TooManyAttachments: (413, "too-many-attachments"),
        errors.TooManyBytesInFlight: (507, "too-many-bytes-in-flight"),
        errors.BodyReadTimeout: (408, "body-read-timeout"),
        errors.InvalidAddress: (422, "invalid-address"),
        errors.MachineAddressRefused: (422, "machine-address-not-administrator"),
        errors.EventBusUnavailable: (503, "bus-unavailable"),
        errors.TokenServiceUnavailable: (503, "token-service-unavailable"),
        errors.NotifierUnavailable: (503, "notifier-unavailable"),
        errors.ServiceFailed: (502, "service-failed"),
    }
    for cls, (status, code) in expected.items():
        assert (status_of(cls), cls.code) == (status, code)


async def test_a_request_off_the_schema_is_a_problem_not_fastapis_default(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/admin/api-keys",
        json={"name": "x", "role": "emperor"},
        headers={"Authorization": f"Bearer {OWNER}"},
    )
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == "https://fleetmail.dev/problems/invalid-request" and "role" in body["detail"]
    assert body["instance"] == "/v1/admin/api-keys" and body["status"] == 422 and body["title"]
    unreadable = await http.post(
        "/v1/admin/api-keys",
        content=b"{not json",
        headers={"Authorization": f"Bearer {OWNER}", "Content-Type": "application/json"},
    )
    assert unreadable.status_code == 422 and unreadable.headers["content-type"] == PROBLEM


async def test_failed_authentication_says_how_to_authenticate(http: httpx.AsyncClient) -> None:
    admin = await http.get("/v1/admin/api-keys")
    assert admin.status_code == 401 and admin.headers["content-type"] == PROBLEM
    assert admin.headers["www-authenticate"] == 'Bearer realm="fleetmail admin"'
    assert admin.json()["title"] == "Administrator authentication failed"
    device = await http.get("/v1/device/information")
    assert (
        device.status_code == 401 and device.headers["www-authenticate"] == 'Basic realm="fleetmail devices"'
    )
    malformed = await http.get("/v1/device/information", headers={"Authorization": "Basic !!!"})
    assert malformed.status_code == 401 and malformed.headers["content-type"] == PROBLEM
    assert malformed.headers["www-authenticate"].startswith("Basic")


async def test_an_unparseable_body_and_an_unknown_path_are_problems_too(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    # A job's body is read only once its device is known: here, a device the directory
    # (absent in process) would have authenticated.
    app.dependency_overrides[current_device] = lambda: Device("mfp-1", "t1")
    try:
        broken = await http.post(
            "/v1/jobs",
            content=b"--b\r\nContent-Disposition: form-data; name=job\r\n\r\n{}\r\n--b--\r\n",
            headers={"Content-Type": "multipart/form-data"},  # no boundary: the parts cannot be found
        )
    finally:
        app.dependency_overrides.clear()
    assert broken.status_code == 400 and broken.headers["content-type"] == PROBLEM
    assert broken.json()["type"].endswith("/bad-request")
    nowhere = await http.get("/v1/nowhere")
    assert nowhere.status_code == 404 and nowhere.headers["content-type"] == PROBLEM
    assert nowhere.json()["type"].endswith("/not-found")


def test_the_smtp_edge_gives_a_device_a_reply_it_can_act_on() -> None:
    cases = {
        errors.EventBusUnavailable("the bus\r\nis down"): "451 4.3.0 the bus  is down",
        errors.RateLimited("slow down", retry_after_s=3): "450 4.7.1 slow down",
        errors.AttachmentTypeRefused("x.exe"): "554 5.6.1 x.exe",
        errors.AttachmentTooLarge("big"): "552 5.3.4 big",
        errors.SubmissionTooLarge("too big"): "552 5.3.4 too big",
        errors.TooManyAttachments("21 files"): "552 5.3.4 21 files",
        errors.TooManyBytesInFlight("wait"): "452 4.3.1 wait",  # for a moment: not the device's fault
        errors.InvalidAddress("nope"): "550 5.6.0 nope",
        errors.InvalidJob("bad"): "550 5.6.0 bad",
        errors.NoAdministratorAddress("taken"): "550 5.6.0 taken",
        errors.TenantNotFound("gone"): "451 4.3.0 gone",  # not the device's fault: try later
    }
    for error, reply in cases.items():
        assert smtp_reply(error) == reply
    assert len(smtp_reply(errors.InvalidJob("x" * 1000))) < 420
