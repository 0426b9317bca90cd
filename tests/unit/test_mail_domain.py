import email
import email.policy
from datetime import UTC, datetime

import pytest
from fleetmail_contracts.jobs import (
    ADMINISTRATOR_FUNCTIONS,
    JOB_COMMANDS,
    JobFunction,
    SendInternetFax,
    SendScanToEmail,
    SendScanToMe,
    SendScanToUrl,
    SendStatusNotification,
)
from fleetmail_contracts.tenants import FromPolicy, TenantSettings
from fleetmail_contracts.tokens import PrincipalKind
from mail_service.domain.compose import HTML_FUNCTIONS, compose
from mail_service.domain.decisions import retry_delay
from mail_service.domain.mime import AttachmentSource, in_memory
from mail_service.domain.sender import resolve_sender
from mail_service.errors import InvalidJob, SenderNotAllowed

NOW = datetime(2026, 11, 28, tzinfo=UTC)
BASE = {"job_id": "job-1", "tenant_id": "t1", "device_id": "d1", "submitted_at": NOW}


def tenant(policy: FromPolicy = FromPolicy.ADMINISTRATOR_ADDRESS) -> TenantSettings:
    return TenantSettings(
        tenant_id="t1", oauth_enabled=True, administrator_address="admin@t1.example", from_policy=policy
    )


@pytest.mark.parametrize("policy", list(FromPolicy))
@pytest.mark.parametrize("function", sorted(ADMINISTRATOR_FUNCTIONS))
def test_administrator_functions_always_use_the_administrator_grant(
    function: JobFunction, policy: FromPolicy
) -> None:
    job = JOB_COMMANDS[function](
        **BASE, to=("ops@t1.example",), login_user="user@t1.example", requested_from="user@t1.example"
    )
    sender = resolve_sender(job, function, tenant(policy))
    assert sender.kind is PrincipalKind.ADMINISTRATOR and sender.address == "admin@t1.example"


def test_login_user_policy_sends_as_the_user() -> None:
    job = SendScanToEmail(**BASE, to=("x@y.example",), login_user="user@t1.example")
    sender = resolve_sender(job, JobFunction.SCAN_TO_EMAIL, tenant(FromPolicy.LOGIN_USER_ADDRESS))
    assert sender.kind is PrincipalKind.USER and sender.address == "user@t1.example"


def test_allow_policy_never_sends_as_an_address_not_listed_for_the_user() -> None:
    job = SendScanToEmail(
        **BASE, to=("x@y.example",), login_user="user@t1.example", requested_from="ceo@t1.example"
    )
    listed = tenant(FromPolicy.ALLOW).model_copy(
        update={"send_as": {"other@t1.example": ("ceo@t1.example",)}}
    )
    for settings in (tenant(FromPolicy.ALLOW), listed):
        with pytest.raises(SenderNotAllowed, match="may not send as"):
            resolve_sender(job, JobFunction.SCAN_TO_EMAIL, settings)


@pytest.mark.parametrize("requested", ["user@t1.example", "USER@t1.example", None])
def test_allow_policy_sends_as_the_user_themselves(requested: str | None) -> None:
    job = SendScanToEmail(**BASE, to=("x@y.example",), login_user="user@t1.example", requested_from=requested)
    sender = resolve_sender(job, JobFunction.SCAN_TO_EMAIL, tenant(FromPolicy.ALLOW))
    assert (sender.address, sender.kind, sender.shown) == (
        "user@t1.example",
        PrincipalKind.USER,
        "user@t1.example",
    )


def test_allow_policy_sends_as_a_listed_address_with_the_users_grant() -> None:
    settings = TenantSettings(
        tenant_id="t1",
        administrator_address="admin@t1.example",
        from_policy=FromPolicy.ALLOW,
        send_as={"User@T1.example": ("Scans@t1.example",)},
    )
    job = SendScanToEmail(
        **BASE, to=("x@y.example",), login_user="user@t1.example", requested_from="scans@T1.example"
    )
    sender = resolve_sender(job, JobFunction.SCAN_TO_EMAIL, settings)
    assert sender.address == "user@t1.example" and sender.kind is PrincipalKind.USER
    assert sender.shown == "scans@T1.example"


@pytest.mark.parametrize("policy", [FromPolicy.LOGIN_USER_ADDRESS, FromPolicy.ALLOW])
def test_a_login_user_outside_the_tenants_mail_domains_fails_rather_than_waits(policy: FromPolicy) -> None:
    job = SendScanToEmail(**BASE, to=("x@y.example",), login_user="victim@anything.example")
    with pytest.raises(SenderNotAllowed, match="not in the tenant's mail domains"):
        resolve_sender(job, JobFunction.SCAN_TO_EMAIL, tenant(policy))


def test_allow_policy_without_a_login_user_sends_as_the_administrator() -> None:
    job = SendScanToEmail(**BASE, to=("x@y.example",), requested_from="someone@t1.example")
    sender = resolve_sender(job, JobFunction.SCAN_TO_EMAIL, tenant(FromPolicy.ALLOW))
    assert sender.address == sender.shown == "admin@t1.example"
    assert sender.kind is PrincipalKind.ADMINISTRATOR
    with pytest.raises(SenderNotAllowed, match="no user is logged in"):
        resolve_sender(job, JobFunction.SCAN_TO_EMAIL, tenant(FromPolicy.LOGIN_USER_ADDRESS))
    with pytest.raises(SenderNotAllowed, match="no administrator e-mail address"):
        resolve_sender(
            job, JobFunction.SCAN_TO_EMAIL, TenantSettings(tenant_id="t1", from_policy=FromPolicy.ALLOW)
        )


def test_a_send_as_list_is_bounded_and_holds_addresses() -> None:
    with pytest.raises(ValueError, match="not an e-mail address"):
        TenantSettings(tenant_id="t1", send_as={"user@t1.example": ("not an address",)})
    with pytest.raises(ValueError, match="at most 10 addresses"):
        TenantSettings(
            tenant_id="t1", send_as={"user@t1.example": tuple(f"a{i}@t1.example" for i in range(11))}
        )
    with pytest.raises(ValueError):
        TenantSettings(tenant_id="t1", send_as={f"u{i}@t1.example": () for i in range(201)})


def test_internet_fax_machine_address_must_be_the_administrator() -> None:
    job = SendInternetFax(**BASE, to=("fax@y.example",), machine_address="machine@t1.example")
    with pytest.raises(SenderNotAllowed, match="must equal"):
        resolve_sender(job, JobFunction.INTERNET_FAX_TX, tenant())


@pytest.mark.parametrize("policy", list(FromPolicy))
@pytest.mark.parametrize("machine_address", [None, "admin@t1.example", "ADMIN@t1.example"])
def test_internet_fax_is_sent_as_the_machine_address_under_every_policy(
    policy: FromPolicy, machine_address: str | None
) -> None:
    job = SendInternetFax(
        **BASE,
        to=("fax@y.example",),
        machine_address=machine_address,
        login_user="user@t1.example",
        requested_from="user@t1.example",
    )
    sender = resolve_sender(job, JobFunction.INTERNET_FAX_TX, tenant(policy))
    assert sender.kind is PrincipalKind.ADMINISTRATOR and sender.address == "admin@t1.example"


@pytest.mark.parametrize("policy", list(FromPolicy))
def test_internet_fax_from_another_machine_address_is_refused_under_every_policy(policy: FromPolicy) -> None:
    job = SendInternetFax(
        **BASE, to=("fax@y.example",), machine_address="user@t1.example", login_user="user@t1.example"
    )
    with pytest.raises(SenderNotAllowed, match="must equal the administrator address"):
        resolve_sender(job, JobFunction.INTERNET_FAX_TX, tenant(policy))


@pytest.mark.parametrize("policy", list(FromPolicy))
def test_internet_fax_without_an_administrator_address_is_refused_under_every_policy(
    policy: FromPolicy,
) -> None:
    job = SendInternetFax(**BASE, to=("fax@y.example",), login_user="user@t1.example")
    settings = TenantSettings(tenant_id="t1", from_policy=policy)
    with pytest.raises(SenderNotAllowed, match="no administrator e-mail address"):
        resolve_sender(job, JobFunction.INTERNET_FAX_TX, settings)


def pdf(data: bytes = b"%PDF-1.4 scan") -> AttachmentSource:
    return AttachmentSource("a.pdf", "application/pdf", in_memory(data))


async def parsed(message) -> email.message.EmailMessage:
    raw = await message.to_bytes()
    assert b"\n" not in raw.replace(b"\r\n", b""), "every line ends in CRLF"
    return email.message_from_bytes(raw, policy=email.policy.default)


async def test_bcc_stays_out_of_headers_and_message_id_follows_the_job() -> None:
    job = SendScanToEmail(**BASE, to=("to@y.example",), bcc=("hidden@y.example",))
    message, recipients = compose(job, JobFunction.SCAN_TO_EMAIL, "admin@t1.example", [pdf()], NOW)
    assert "hidden@y.example" in recipients
    assert b"hidden@y.example" not in await message.to_bytes()
    result = await parsed(message)
    assert result["Message-ID"] == "<job-1@fleetmail>"
    assert [(p.get_filename(), p.get_content()) for p in result.iter_attachments()] == [
        ("a.pdf", b"%PDF-1.4 scan")
    ]


async def test_large_attachments_and_unicode_survive_the_round_trip() -> None:
    data = bytes(range(256)) * 40_000 + b"tail"
    job = SendScanToEmail(
        **BASE, to=("to@y.example",), subject="Scan für Zoë — Ω", body="Grüße\n.leading dot\n"
    )
    source = AttachmentSource("Bericht ü.pdf", "application/pdf", in_memory(data))
    message, _ = compose(job, JobFunction.SCAN_TO_EMAIL, "admin@t1.example", [source], NOW)
    result = await parsed(message)
    assert result["Subject"] == "Scan für Zoë — Ω"
    assert result.get_body().get_content().replace("\r\n", "\n") == "Grüße\n.leading dot\n"
    attachment = next(result.iter_attachments())
    assert attachment.get_filename() == "Bericht ü.pdf" and attachment.get_content() == data
    assert not any(line.startswith(b".") for line in (await message.to_bytes()).split(b"\r\n"))


def test_header_injection_is_refused() -> None:
    job = SendScanToEmail(**BASE, to=("to@y.example",), subject="hi\r\nBcc: victim@z.example")
    with pytest.raises(InvalidJob, match="line break"):
        compose(job, JobFunction.SCAN_TO_EMAIL, "admin@t1.example", [], NOW)
    bad = SendScanToEmail(**BASE, to=("to@y.example\r\nX: y",))
    with pytest.raises(InvalidJob):
        compose(bad, JobFunction.SCAN_TO_EMAIL, "admin@t1.example", [], NOW)


async def test_scan_to_me_and_scan_to_url() -> None:
    me = SendScanToMe(**BASE, login_user="user@t1.example")
    message, recipients = compose(me, JobFunction.SCAN_TO_ME, "user@t1.example", [], NOW)
    assert recipients == ["user@t1.example"]
    url = SendScanToUrl(**BASE, to=("to@y.example",), document_url="https://files.example/doc/1")
    message, _ = compose(url, JobFunction.SCAN_TO_URL, "admin@t1.example", [pdf()], NOW)
    result = await parsed(message)
    assert "https://files.example/doc/1" in result.get_body().get_content()
    assert list(result.iter_attachments()) == []


def test_every_device_function_has_a_command() -> None:
    assert set(JOB_COMMANDS) == set(JobFunction) and len(JobFunction) == 12


def test_retry_delay_grows_and_is_capped() -> None:
    assert retry_delay(1, 5, 300, 1.0) < retry_delay(3, 5, 300, 1.0)
    assert retry_delay(20, 5, 300, 0.999) <= 300


async def test_link_and_report_functions_and_only_they_carry_an_escaped_html_alternative() -> None:
    url = SendScanToUrl(
        **BASE,
        to=("to@y.example",),
        body="Scan <script>alert(1)</script> & more",
        document_url="https://files.example/doc/1?a=1&b=2",
    )
    message, _ = compose(url, JobFunction.SCAN_TO_URL, "admin@t1.example", [], NOW)
    result = await parsed(message)
    plain = result.get_body(preferencelist=("plain",)).get_content()
    page = result.get_body(preferencelist=("html",)).get_content()
    assert "https://files.example/doc/1?a=1&b=2" in plain and "<script>" in plain
    assert '<a href="https://files.example/doc/1?a=1&amp;b=2">' in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    status = SendStatusNotification(**BASE, to=("ops@t1.example",), body="Toner low\n\nTray 2 empty")
    message, _ = compose(status, JobFunction.STATUS_NOTIFICATION, "admin@t1.example", [], NOW)
    page = (await parsed(message)).get_body(preferencelist=("html",)).get_content()
    assert "<p>Toner low</p><p>Tray 2 empty</p>" in page
    for function in JobFunction:
        extra = {"document_url": "https://f.example/1"} if function is JobFunction.SCAN_TO_URL else {}
        job = JOB_COMMANDS[function](**BASE, to=("to@y.example",), login_user="user@t1.example", **extra)
        message, _ = compose(job, function, "admin@t1.example", [pdf()], NOW)
        html_part = (await parsed(message)).get_body(preferencelist=("html",))
        assert (html_part is not None) == (function in HTML_FUNCTIONS), function


def test_a_document_url_that_is_not_http_is_refused() -> None:
    job = SendScanToUrl(**BASE, to=("to@y.example",), document_url="javascript:alert(1)")
    with pytest.raises(InvalidJob, match="http or https"):
        compose(job, JobFunction.SCAN_TO_URL, "admin@t1.example", [], NOW)


@pytest.mark.parametrize("length", [0, 1, 56, 57, 58, 57 * 1024, 57 * 1024 + 1, 1_000_003])
async def test_the_size_of_a_message_is_known_before_it_is_written(length: int) -> None:
    data = b"x" * length
    job = SendStatusNotification(**BASE, to=("ops@t1.example",), body="report")
    source = AttachmentSource("r.pdf", "application/pdf", in_memory(data), len(data))
    message, _ = compose(job, JobFunction.STATUS_NOTIFICATION, "admin@t1.example", [source], NOW)
    assert message.size() == len(await message.to_bytes())
