"""The outbound rule (fleetmail_runtime.outbound) on its own: every special-purpose range, the
ways an address can hide (IPv4 inside IPv6, numbers the resolver reads as addresses, names
that are special by definition), what the operator's ranges allow, and the checks that use it
when a tenant's settings are saved and when alert recipients are read. No network: resolutions
are given as getaddrinfo would answer."""

from __future__ import annotations

import re
import socket

import pytest
from fleetmail_contracts.tenants import NotificationSettings, SmtpSettings, TenantSettings, WebhookChannel
from fleetmail_runtime.outbound import (
    ALLOWED_RANGES_SETTING,
    LOOPBACK_RANGES,
    DestinationRefused,
    OutboundPolicy,
    literal_address,
)
from fleetmail_runtime.settings import CommonSettings
from job_gateway.errors import InvalidAddress, OutboundDestinationRefused
from job_gateway.use_cases.tenants import check_alert_recipients, check_destinations
from notifier.domain.notices import MAILTO, endpoints
from pydantic import ValidationError

NOTHING = OutboundPolicy()
LOOPBACK = OutboundPolicy.of(LOOPBACK_RANGES)

REFUSED = {
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "::1": "loopback",
    "169.254.169.254": "link-local",
    "fe80::1": "link-local",
    "fe80::1%eth0": "link-local",
    "10.0.0.1": "private",
    "172.16.5.4": "private",
    "192.168.1.1": "private",
    "fd00::1": "private",
    "100.64.0.1": "special-purpose",  # carrier-grade NAT (shared address space)
    "192.0.0.8": "special-purpose",
    "198.18.0.1": "private",  # benchmarking
    "224.0.0.251": "multicast",
    "ff02::1": "multicast",
    "240.0.0.1": "private",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
}


@pytest.mark.parametrize(("address", "range_"), REFUSED.items())
def test_each_special_purpose_range_is_refused_and_named(address: str, range_: str) -> None:
    why = NOTHING.refusal_of_host(address)
    assert why is not None and range_ in why
    assert why.startswith("destination ") and ALLOWED_RANGES_SETTING in why


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "8.8.8.8"])
def test_a_global_address_is_allowed(address: str) -> None:
    assert NOTHING.refusal_of_host(address) is None


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("2852039166", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("[::ffff:169.254.169.254]", "::ffff:a9fe:a9fe"),
    ],
)
def test_numbers_the_resolver_reads_as_addresses_are_those_addresses(written: str, meant: str) -> None:
    assert str(literal_address(written)) == meant
    assert NOTHING.refusal_of_host(written) is not None


@pytest.mark.parametrize("name", ["cafe.be", "example.com", "deadbeef", "1.example", "smtp.office365.com"])
def test_a_name_is_not_taken_for_a_number(name: str) -> None:
    assert literal_address(name) is None
    assert NOTHING.refusal_of_host(name) is None  # names are judged when resolved


@pytest.mark.parametrize(
    ("address", "carried"),
    [
        ("::ffff:169.254.169.254", "169.254.169.254"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("2002:a9fe:a9fe::1", "169.254.169.254"),  # 6to4
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "10.0.0.1"),  # Teredo client 10.0.0.1
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # NAT64
    ],
)
def test_an_ipv4_address_inside_ipv6_is_judged_as_itself(address: str, carried: str) -> None:
    why = NOTHING.refusal_of_host(address)
    assert why is not None and f"carries {carried}" in why


def test_the_operators_ranges_allow_exactly_what_they_name() -> None:
    assert LOOPBACK.refusal_of_host("127.0.0.1") is None
    assert LOOPBACK.refusal_of_host("::1") is None
    assert LOOPBACK.refusal_of_host("::ffff:127.0.0.1") is None  # the mapped form is the IPv4 one
    assert LOOPBACK.refusal_of_host("localhost") is None
    assert LOOPBACK.refusal_of_host("10.0.0.1") is not None
    assert LOOPBACK.refusal_of_host("169.254.169.254") is not None
    office = OutboundPolicy.of(["10.20.0.0/16"])
    assert office.refusal_of_host("10.20.3.4") is None
    assert office.refusal_of_host("10.21.3.4") is not None
    assert office.refusal_of_host("2002:a14:304::") is None  # 6to4 of an allowed address


@pytest.mark.parametrize("name", ["localhost", "LOCALHOST.", "printer.localhost", "metadata.google.internal"])
def test_names_that_are_special_by_definition_are_refused_without_dns(name: str) -> None:
    why = NOTHING.refusal_of_host(name)
    assert why is not None and name.strip() in why


def resolution(*addresses: str) -> list[tuple[object, ...]]:
    return [
        (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 25))
        for a in addresses
    ]


def test_every_resolved_address_is_checked_and_only_checked_ones_are_given() -> None:
    assert NOTHING.allowed_addresses("mx.example", resolution("93.184.215.14")) == ["93.184.215.14"]
    with pytest.raises(DestinationRefused, match=r"mx\.example \(10\.0\.0\.1\) is in a private range"):
        NOTHING.allowed_addresses("mx.example", resolution("93.184.215.14", "10.0.0.1"))
    with pytest.raises(DestinationRefused, match="loopback"):
        NOTHING.allowed_addresses("rebound.example", resolution("127.0.0.1"))
    with pytest.raises(socket.gaierror):
        NOTHING.allowed_addresses("nothing.example", [])


async def test_a_loopback_name_is_refused_when_resolved() -> None:
    with pytest.raises(DestinationRefused, match=r"localhost \(127\.0\.0\.1\)"):
        await NOTHING.resolve_allowed("localhost", 25)
    assert "127.0.0.1" in await LOOPBACK.resolve_allowed("localhost", 25)


def test_the_setting_is_a_list_of_cidrs_and_nothing_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CommonSettings().outbound_policy() == NOTHING
    monkeypatch.setenv(ALLOWED_RANGES_SETTING, '["127.0.0.0/8", "::1/128"]')
    assert CommonSettings().outbound_policy() == LOOPBACK
    monkeypatch.setenv(ALLOWED_RANGES_SETTING, '["not a range"]')
    with pytest.raises(ValidationError):
        CommonSettings()


def tenant(**fields: object) -> TenantSettings:
    return TenantSettings.model_validate({"tenant_id": "t1", **fields})


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (
            {"notifications": NotificationSettings(webhooks=(WebhookChannel(url="http://10.0.0.1/x"),))},
            "webhooks[0]",
        ),
        ({"smtp": SmtpSettings(host="169.254.169.254", port=25)}, "smtp.host"),
        ({"smtp": SmtpSettings(host="[::ffff:169.254.169.254]", port=25)}, "smtp.host"),
        ({"proxy_url": "http://user:pw@2852039166:3128"}, "proxy_url"),
        ({"proxy_url": "socks5://proxy.example:1080"}, "proxy_url"),
        ({"proxy_url": "http://proxy.example:port"}, "proxy_url"),
    ],
)
def test_a_save_naming_a_refused_destination_is_refused(fields: dict[str, object], named: str) -> None:
    with pytest.raises(OutboundDestinationRefused, match=re.escape(named)):
        check_destinations(tenant(**fields), NOTHING)


@pytest.mark.parametrize(
    "proxy_url",
    ["socks5://site:Pr0xy-Secret@proxy.example:1080", "http://site:Pr0xy-Secret@proxy.example:port"],
)
def test_a_refused_proxy_is_named_without_its_credentials(proxy_url: str) -> None:
    with pytest.raises(OutboundDestinationRefused, match="proxy_url") as refused:
        check_destinations(tenant(proxy_url=proxy_url), NOTHING)
    assert "Pr0xy-Secret" not in str(refused.value)


def test_a_save_naming_public_names_or_allowed_ranges_passes() -> None:
    settings = tenant(
        notifications=NotificationSettings(webhooks=(WebhookChannel(url="https://hooks.example/a"),)),
        smtp=SmtpSettings(host="smtp.office365.com", port=587),
        proxy_url="http://proxy.example:3128",
    )
    check_destinations(settings, NOTHING)
    check_destinations(tenant(smtp=SmtpSettings(host="localhost", port=2525)), LOOPBACK)


BAD_RECIPIENTS = [
    "ops@t1.example\r\nBcc: everyone@elsewhere.example",
    "ops@t1.example\n",
    "ops@t1.example, boss@elsewhere.example",
    "ops@t1.example;boss@elsewhere.example",
    "Ops <ops@t1.example>, Boss <boss@elsewhere.example>",
    "Ops <ops@t1.example>",
    "ops@t1.example boss@elsewhere.example",
    "not an address",
    "",
]


@pytest.mark.parametrize("recipient", BAD_RECIPIENTS)
def test_an_alert_recipient_is_one_plain_address(recipient: str) -> None:
    with pytest.raises(InvalidAddress, match=r"email_recipients\[1\]"):
        check_alert_recipients(tenant(notifications={"email_recipients": ["ops@t1.example", recipient]}))


def test_stored_bad_recipients_are_skipped_and_named_not_sent_to() -> None:
    notifications = NotificationSettings(email_recipients=("ops@t1.example", *BAD_RECIPIENTS[:3]))
    urls, problems = endpoints(notifications, relay=True)
    assert urls == [f"{MAILTO}ops@t1.example"]
    assert len(problems) == 3 and all("skipped" in p for p in problems)
