"""job-gateway's pure rules (`job_gateway.domain`): key roles, sign-in flows, the Internet Fax
machine address, what a job may contain, and the job-status projection."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fleetmail_contracts.tenants import IdentitySettings, TenantSettings
from fleetmail_contracts.tokens import AcquisitionFlow, PrincipalKind, Provider
from job_gateway.credentials import new_api_key, split_api_key
from job_gateway.domain import (
    Access,
    Administrator,
    Role,
    as_seen_by,
    check_attachment_type,
    check_machine_address,
    check_principal_address,
    check_submission,
    default_sign_in_flow,
    device_matches,
    legacy_smtp_job_id,
    may_change,
    redact_url,
    refusal,
    retry_after_s,
    scoped_job_id,
    sees_the_whole_fleet,
    smtp_job_id,
    status_update,
    visible_tenants,
)
from job_gateway.errors import (
    AttachmentTypeRefused,
    InvalidAddress,
    MachineAddressRefused,
    TooManyRecipients,
    UnsafeHeader,
)
from job_gateway.schemas import JobSubmission

OWNER = Administrator("o", Role.OWNER, None)
FLEET = Administrator("f", Role.FLEET_ADMIN, ("t1",))
OPERATOR = Administrator("r", Role.OPERATOR, None)


def test_administrator_roles() -> None:
    key_id, secret, key = new_api_key()
    assert split_api_key(key) == (key_id, secret) and split_api_key("Bearer nonsense") is None
    assert refusal(OWNER, Access.WRITE, "t9") is None and refusal(OWNER, Access.MANAGE_KEYS, None) is None
    assert refusal(FLEET, Access.WRITE, "t1") is None
    assert "no access" in (refusal(FLEET, Access.READ, "t2") or "")
    assert "only the owner" in (refusal(FLEET, Access.MANAGE_KEYS, None) or "")
    assert refusal(OPERATOR, Access.READ, "t2") is None
    assert "read-only" in (refusal(OPERATOR, Access.WRITE, "t2") or "")


def test_only_the_owner_manages_keys_even_to_read_them() -> None:
    for admin in (FLEET, OPERATOR):
        assert "only the owner" in (refusal(admin, Access.MANAGE_KEYS, None) or "")


def test_an_operator_limited_to_tenants_reads_only_those() -> None:
    limited = Administrator("r2", Role.OPERATOR, ("t1",))
    assert refusal(limited, Access.READ, "t1") is None
    assert "no access to tenant 't2'" in (refusal(limited, Access.READ, "t2") or "")


def test_tenant_lists_are_readable_by_every_role_and_writable_by_none_but_the_owner() -> None:
    assert refusal(FLEET, Access.READ, None) is None
    assert refusal(FLEET, Access.WRITE, None) is not None
    assert refusal(OPERATOR, Access.WRITE, None) is not None
    assert refusal(OWNER, Access.WRITE, None) is None


def test_a_key_sees_only_its_tenants_in_order() -> None:
    tenants = [TenantSettings(tenant_id=t) for t in ("t3", "t1", "t2")]
    assert [t.tenant_id for t in visible_tenants(FLEET, tenants)] == ["t1"]
    assert [t.tenant_id for t in visible_tenants(OPERATOR, tenants)] == ["t1", "t2", "t3"]


def test_the_default_sign_in_is_a_device_code_for_microsoft_and_a_browser_for_google() -> None:
    microsoft = TenantSettings(tenant_id="m")
    google = TenantSettings(tenant_id="g", provider=Provider.GOOGLE)
    for kind in PrincipalKind:
        assert default_sign_in_flow(microsoft, kind) is AcquisitionFlow.DEVICE_CODE
        assert default_sign_in_flow(google, kind) is AcquisitionFlow.AUTHORIZATION_CODE


def test_an_app_only_tenant_acquires_the_administrator_app_only_but_not_its_users() -> None:
    app_only = TenantSettings(tenant_id="a", identity=IdentitySettings(app_only=True))
    assert default_sign_in_flow(app_only, PrincipalKind.ADMINISTRATOR) is AcquisitionFlow.APP_ONLY
    assert default_sign_in_flow(app_only, PrincipalKind.USER) is AcquisitionFlow.DEVICE_CODE


def test_the_fax_machine_address_must_be_the_administrator_address() -> None:
    tenant = TenantSettings(tenant_id="t", administrator_address="Admin@Contoso.example")
    check_machine_address(tenant, "admin@contoso.example")  # case does not matter
    with pytest.raises(MachineAddressRefused, match=r"Admin@Contoso\.example"):
        check_machine_address(tenant, "fax@contoso.example")
    with pytest.raises(MachineAddressRefused, match="none set"):
        check_machine_address(TenantSettings(tenant_id="t"), "fax@contoso.example")


def test_a_job_names_addresses_few_enough_recipients_and_safe_headers() -> None:
    check_submission(JobSubmission(to=["a@b.example"], subject="Scan"), max_recipients=2)
    with pytest.raises(InvalidAddress):
        check_submission(JobSubmission(to=["not-an-address"]), max_recipients=2)
    with pytest.raises(InvalidAddress):
        check_submission(JobSubmission(to=["a@b.example"], requested_from="nobody"), max_recipients=2)
    with pytest.raises(TooManyRecipients, match="at most 2"):
        check_submission(
            JobSubmission(to=["a@b.example", "c@d.example"], cc=["e@f.example"]), max_recipients=2
        )
    with pytest.raises(UnsafeHeader):
        check_submission(
            JobSubmission(to=["a@b.example"], subject="Hi\r\nBcc: x@y.example"), max_recipients=2
        )
    with pytest.raises(UnsafeHeader):
        check_submission(JobSubmission(to=["a@b.example\r\n"]), max_recipients=2)


def test_attachment_types_are_those_allowed_unless_any_is() -> None:
    check_attachment_type("scan.pdf", "application/pdf; name=scan.pdf", ["application/pdf"])
    check_attachment_type("blob", None, ["application/octet-stream"])
    check_attachment_type("setup.exe", "application/x-msdownload", ["*"])
    with pytest.raises(AttachmentTypeRefused, match=r"setup\.exe: application/x-msdownload"):
        check_attachment_type("setup.exe", "application/x-msdownload", ["application/pdf"])


def test_a_principal_address_has_an_at_and_no_line_break() -> None:
    check_principal_address("user@contoso.example")
    for bad in ("user", "user@contoso.example\r\nX: y", "a\x00@b.example"):
        with pytest.raises(InvalidAddress):
            check_principal_address(bad)


def test_a_device_waits_whole_seconds_and_never_zero() -> None:
    assert [retry_after_s(w) for w in (0.0, 0.2, 0.5, 1.2, 2.6)] == [1, 1, 1, 2, 3]


def test_the_same_message_from_the_same_device_is_the_same_job() -> None:
    first = smtp_job_id("t1", "mfp-1", "<abc@mfp>")
    assert first == smtp_job_id("t1", "mfp-1", "<abc@mfp>") and len(first) == 32
    assert first != smtp_job_id("t1", "mfp-2", "<abc@mfp>") and first != smtp_job_id(
        "t1", "mfp-1", "<abd@mfp>"
    )
    # Device ids are per tenant: another tenant's device of the same id is another device.
    assert first != smtp_job_id("t2", "mfp-1", "<abc@mfp>")
    assert legacy_smtp_job_id("mfp-1", "<abc@mfp>") not in (first, smtp_job_id("t2", "mfp-1", "<abc@mfp>"))


def test_a_job_id_chosen_by_a_device_is_its_tenants_own() -> None:
    mine = scoped_job_id("t1", "job-00001")
    assert mine == scoped_job_id("t1", "job-00001") and len(mine) == 32
    assert mine != scoped_job_id("t2", "job-00001") and mine != "job-00001"
    # No pair of tenant and id is written as another pair: the separator is not in either.
    assert scoped_job_id("t1", "2job") != scoped_job_id("t12", "job")


def test_a_mail_event_becomes_a_status_update_with_its_details() -> None:
    update = status_update(
        {
            "job_id": "j1",
            "kind": "failed",
            "occurred_at": "2026-01-02T03:04:05+00:00",
            "reason": "the grant is dead",
            "remedy": "acquire the token again",
            "smtp_reply": None,
            "unrelated": "ignored",
        }
    )
    assert (update.job_id, update.status, update.at) == (
        "j1",
        "failed",
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert dict(update.fields) == {
        "remedy": "acquire the token again",
        "detail": "the grant is dead",
        "dead_lettered_at": update.at,  # every failure is a dead letter: the overview counts them
    }
    explicit = status_update(
        {
            "job_id": "j1",
            "kind": "failed",
            "occurred_at": "2026-01-02T03:04:05+00:00",
            "detail": "d",
            "reason": "r",
        }
    )
    assert dict(explicit.fields) == {"detail": "d", "dead_lettered_at": explicit.at}


def test_a_mail_event_adds_what_it_said_to_the_jobs_timeline() -> None:
    deferred = status_update(
        {
            "job_id": "j1",
            "kind": "deferred",
            "occurred_at": "2026-01-02T03:04:05+00:00",
            "attempt": 2,
            "reason": "451 4.7.500 Server busy",
            "next_attempt_at": "2026-01-02T03:05:05+00:00",
            "tenant_id": "t1",
        }
    )
    assert deferred.entry == {
        "kind": "deferred",
        "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "attempt": 2,
        "detail": "451 4.7.500 Server busy",
        "next_attempt_at": "2026-01-02T03:05:05+00:00",
    }
    sent = status_update(
        {
            "job_id": "j1",
            "kind": "sent",
            "occurred_at": "2026-01-02T03:06:00+00:00",
            "smtp_reply": "250 2.0.0 OK",
        }
    )
    assert sent.entry is not None and sent.entry["smtp_reply"] == "250 2.0.0 OK"


def test_a_device_is_found_by_its_id_name_fax_address_or_range() -> None:
    device = {
        "device_id": "mfp-7",
        "name": "Lobby C3530i",
        "machine_address": "Fax@T1.example",
        "allow_cidrs": ["192.0.2.0/28"],
    }
    for search in ("MFP-7", "c3530", "fax@t1", "192.0.2.", " lobby "):
        assert device_matches(device, search), search
    assert not device_matches(device, "kitchen")
    assert not device_matches({"device_id": "mfp-8", "name": None}, "none")


def test_a_job_status_only_moves_forward() -> None:
    assert may_change("queued") and may_change("accepted") and may_change("deferred")
    assert not may_change("sent") and not may_change("failed")


def test_only_a_key_for_every_tenant_sees_the_shared_queues() -> None:
    assert sees_the_whole_fleet(Administrator("owner", Role.OWNER, None))
    assert sees_the_whole_fleet(Administrator("k1", Role.OPERATOR, None))
    assert not sees_the_whole_fleet(Administrator("k2", Role.OPERATOR, ("t1",)))
    assert not sees_the_whole_fleet(Administrator("k3", Role.FLEET_ADMIN, ("t1",)))


def test_a_proxy_url_is_shown_to_operators_without_its_credentials() -> None:
    assert redact_url("http://user:pw@proxy.example:3128") == "http://redacted@proxy.example:3128"
    assert redact_url("https://token@proxy.example/path") == "https://redacted@proxy.example/path"
    assert redact_url("http://proxy.example:3128") == "http://proxy.example:3128"
    assert redact_url("http://user:pw@proxy.example:99999") == "redacted"  # unreadable: nothing shown
    tenant = TenantSettings(tenant_id="t1", proxy_url="http://user:pw@proxy.example:3128")
    operator = Administrator("k1", Role.OPERATOR, ("t1",))
    assert as_seen_by(operator, tenant).proxy_url == "http://redacted@proxy.example:3128"
    for writer in (Administrator("owner", Role.OWNER, None), Administrator("k2", Role.FLEET_ADMIN, ("t1",))):
        assert as_seen_by(writer, tenant).proxy_url == tenant.proxy_url
