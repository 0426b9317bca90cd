"""What a message received over SMTP becomes: rules by recipient, subject or From, and the
login user its From names under each From policy."""

import pytest
from fleetmail_contracts.jobs import JobFunction
from fleetmail_contracts.tenants import FromPolicy, TenantSettings
from job_gateway.errors import OutsideTenantDomains
from job_gateway.schemas import DeviceChange, SmtpRule
from job_gateway.smtp_rules import address_of, function_of, glob_match, login_user_of, sent_by_a_user
from pydantic import ValidationError


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("counter@*", "counter@fabrikam.example", True),
        ("counter@*", "Counter@Fabrikam.example", True),
        ("counter@*", "x-counter@fabrikam.example", False),
        ("*counter*", "Total Counter Notification", True),
        ("*counter", "counter report", False),
        ("tx result ??", "TX Result OK", True),
        ("tx result ??", "TX Result NG!", False),
        ("a*b*c", "abc", True),
        ("a*b*c", "acb", False),
        ("*", "", True),
        ("", "", True),
        ("exact", "exact", True),
        ("exact", "exactly", False),
    ],
)
def test_glob_patterns_match_the_whole_value_ignoring_case(pattern: str, text: str, expected: bool) -> None:
    assert glob_match(pattern, text) is expected


def test_a_hostile_pattern_is_answered() -> None:
    """What makes a backtracking matcher run for ages (many stars, a long value that nearly
    matches) is answered at once: a matcher that backtracked would outlast the test's timeout."""
    assert not glob_match("*a" * 100, "a" * 997 + "b")
    assert glob_match("*a" * 100, "a" * 998)


RULES = [
    SmtpRule(function=JobFunction.TOTAL_COUNTER_NOTIFICATION, subject="*counter*"),
    SmtpRule(function=JobFunction.STATUS_NOTIFICATION, recipient="status@*", sender="mfp@*"),
]


@pytest.mark.parametrize(
    ("recipients", "subject", "sender", "expected"),
    [
        (
            ["billing@fabrikam.example"],
            "Total Counter",
            "mfp@contoso.example",
            JobFunction.TOTAL_COUNTER_NOTIFICATION,
        ),
        (
            ["boss@x.example", "status@fabrikam.example"],
            "Jam",
            "mfp@contoso.example",
            JobFunction.STATUS_NOTIFICATION,
        ),
        (["status@fabrikam.example"], "Jam", "user@contoso.example", JobFunction.SCAN_TO_EMAIL),
        (["boss@fabrikam.example"], "Scan", "mfp@contoso.example", JobFunction.SCAN_TO_EMAIL),
    ],
)
def test_the_first_matching_rule_names_the_function_else_the_default(
    recipients: list[str], subject: str, sender: str, expected: JobFunction
) -> None:
    assert function_of(RULES, JobFunction.SCAN_TO_EMAIL, recipients, subject, sender) is expected


def test_rules_are_validated_and_bounded() -> None:
    with pytest.raises(ValidationError, match="needs a recipient, subject or sender"):
        SmtpRule(function=JobFunction.SCAN_TO_EMAIL)
    with pytest.raises(ValidationError):
        SmtpRule(function=JobFunction.SCAN_TO_EMAIL, subject="x" * 201)
    with pytest.raises(ValidationError, match="line break"):
        SmtpRule(function=JobFunction.SCAN_TO_EMAIL, subject="a\r\nb")
    with pytest.raises(ValidationError):
        SmtpRule.model_validate({"function": "no_such_function", "subject": "x"})
    with pytest.raises(ValidationError):
        DeviceChange(
            smtp_rules=[SmtpRule(function=JobFunction.SCAN_TO_EMAIL, subject=str(i)) for i in range(21)]
        )


def tenant(policy: FromPolicy) -> TenantSettings:
    return TenantSettings(
        tenant_id="t1",
        administrator_address="admin@t1.example",
        from_policy=policy,
        mail_domains=("t1.example", "t1-sales.example"),
    )


def test_the_from_is_the_login_user_under_the_login_user_policies() -> None:
    for policy in (FromPolicy.LOGIN_USER_ADDRESS, FromPolicy.ALLOW):
        assert (
            login_user_of(tenant(policy), JobFunction.SCAN_TO_EMAIL, "ann@t1-sales.example")
            == "ann@t1-sales.example"
        )
    assert (
        login_user_of(tenant(FromPolicy.ADMINISTRATOR_ADDRESS), JobFunction.SCAN_TO_EMAIL, "ann@t1.example")
        is None
    )
    # Administrator functions and Internet Fax are the administrator's, whoever sends them.
    for function in (JobFunction.STATUS_NOTIFICATION, JobFunction.INTERNET_FAX_TX):
        assert login_user_of(tenant(FromPolicy.LOGIN_USER_ADDRESS), function, "ann@t1.example") is None


def test_a_from_outside_the_tenants_domains_is_refused_or_sent_by_the_administrator() -> None:
    with pytest.raises(OutsideTenantDomains, match="not an address in the tenant's mail domains"):
        login_user_of(tenant(FromPolicy.LOGIN_USER_ADDRESS), JobFunction.SCAN_TO_EMAIL, "mfp@contoso.example")
    with pytest.raises(OutsideTenantDomains):
        login_user_of(tenant(FromPolicy.LOGIN_USER_ADDRESS), JobFunction.SCAN_TO_EMAIL, None)
    assert login_user_of(tenant(FromPolicy.ALLOW), JobFunction.SCAN_TO_EMAIL, "mfp@contoso.example") is None


def test_the_from_header_gives_one_address() -> None:
    assert address_of("Ann Example <ann@t1.example>") == "ann@t1.example"
    assert address_of("not an address") is None


def test_a_users_message_never_becomes_an_administrator_function_by_a_rule() -> None:
    """Subject and recipient are what a walk-up user types: a rule naming a function sent with
    the administrator's grant applies only to the device's own notification sender."""
    rules = [
        SmtpRule(function=JobFunction.TOTAL_COUNTER_NOTIFICATION, subject="*counter*"),
        SmtpRule(function=JobFunction.INTERNET_FAX_TX, recipient="fax@*"),
        SmtpRule(function=JobFunction.SCAN_TO_ME, subject="*me*"),
    ]
    allow = tenant(FromPolicy.ALLOW)

    def function(
        sender: str, subject: str, to: str = "x@fabrikam.example", machine: str | None = None
    ) -> JobFunction:
        by_user = sent_by_a_user(allow, sender, machine)
        return function_of(rules, JobFunction.SCAN_TO_EMAIL, [to], subject, sender, by_user)

    # A user of the tenant: the administrator's rules are skipped, other rules still apply.
    assert function("ann@t1.example", "Total Counter") is JobFunction.SCAN_TO_EMAIL
    assert function("ann@t1-sales.example", "x", to="fax@gw.example") is JobFunction.SCAN_TO_EMAIL
    assert function("ann@t1.example", "scan to me") is JobFunction.SCAN_TO_ME
    assert (
        login_user_of(allow, function("ann@t1.example", "Total Counter"), "ann@t1.example")
        == "ann@t1.example"
    )
    # The device's own sender: the machine address, the administrator's, one outside the domains.
    assert function("mfp@t1.example", "Total Counter", machine="MFP@t1.example") is (
        JobFunction.TOTAL_COUNTER_NOTIFICATION
    )
    assert function("admin@t1.example", "Total Counter") is JobFunction.TOTAL_COUNTER_NOTIFICATION
    assert function("mfp@contoso.example", "Total Counter") is JobFunction.TOTAL_COUNTER_NOTIFICATION
    # A device whose own function is the administrator's: a user's message is a scan.
    by_user = sent_by_a_user(allow, "ann@t1.example", None)
    assert function_of([], JobFunction.STATUS_NOTIFICATION, [], "", "ann@t1.example", by_user) is (
        JobFunction.SCAN_TO_EMAIL
    )
    # A device that sends its notices From a mailbox of the tenant: a rule naming that address
    # whole says it is the device's own, so its rules for administrator functions apply.
    lobby = [SmtpRule(function=JobFunction.STATUS_NOTIFICATION, sender="mfp-lobby@t1.example")]
    assert not sent_by_a_user(allow, "MFP-Lobby@t1.example", None, lobby)
    assert function_of(lobby, JobFunction.SCAN_TO_EMAIL, [], "", "mfp-lobby@t1.example", False) is (
        JobFunction.STATUS_NOTIFICATION
    )
    # A wildcard names no one address: a user's message still is the user's.
    assert sent_by_a_user(
        allow,
        "ann@t1.example",
        None,
        [SmtpRule(function=JobFunction.STATUS_NOTIFICATION, sender="*@t1.example")],
    )
    # Under the administrator policy every message is the administrator's: the rules apply.
    assert not sent_by_a_user(tenant(FromPolicy.ADMINISTRATOR_ADDRESS), "ann@t1.example", None)
