"""The allowlist rules (`job_gateway.allowlists`): which ranges a device may claim, overlaps,
and the index the SMTP listener finds a device in by its source address."""

from __future__ import annotations

import pytest
from job_gateway.allowlists import AllowlistIndex, AllowlistPolicy, check_ranges, check_unclaimed, parse
from job_gateway.errors import AllowlistOverlap, AllowlistRangeRefused
from job_gateway.schemas import DeviceChange, DeviceRegistration

SINGLE = AllowlistPolicy()
SUBNETS = AllowlistPolicy(min_prefix_v4=24, min_prefix_v6=64)


def test_by_default_only_single_addresses_are_allowed() -> None:
    assert [str(n) for n in check_ranges(["192.0.2.15", "192.0.2.16/32", "2001:db8::1"], SINGLE)] == [
        "192.0.2.15/32",
        "192.0.2.16/32",
        "2001:db8::1/128",
    ]
    for wide in ("192.0.2.0/31", "10.0.0.0/8", "2001:db8::/127"):
        with pytest.raises(AllowlistRangeRefused, match="MIN_ALLOWLIST_PREFIX"):
            check_ranges([wide], SINGLE)


def test_wider_ranges_only_as_wide_as_the_operator_allows_and_never_everything() -> None:
    assert [str(n) for n in check_ranges(["192.0.2.7/24", "2001:db8:1::/64"], SUBNETS)] == [
        "192.0.2.0/24",
        "2001:db8:1::/64",
    ]
    with pytest.raises(AllowlistRangeRefused):
        check_ranges(["192.0.0.0/16"], SUBNETS)
    everything = AllowlistPolicy(min_prefix_v4=0, min_prefix_v6=0)  # a setting cannot allow /0
    for internet in ("0.0.0.0/0", "::/0"):
        with pytest.raises(AllowlistRangeRefused, match="every address"):
            check_ranges([internet], everything)
    assert check_ranges(["0.0.0.0/1"], everything)
    with pytest.raises(AllowlistRangeRefused, match="not an address range"):
        check_ranges(["scanner.local"], SINGLE)


def test_a_range_overlapping_another_devices_is_refused_without_saying_whose() -> None:
    with pytest.raises(AllowlistOverlap) as equal:
        check_unclaimed([parse("192.0.2.15/32")], ["198.51.100.1/32", "192.0.2.15/32"])
    assert "another device" in equal.value.detail
    with pytest.raises(AllowlistOverlap):
        check_unclaimed([parse("192.0.2.15/32")], ["192.0.2.0/24"])  # inside a wider one
    with pytest.raises(AllowlistOverlap):
        check_unclaimed([parse("192.0.2.0/24")], ["192.0.2.200/32"])  # around a narrower one
    check_unclaimed([parse("192.0.2.16/32"), parse("2001:db8::f/128")], ["192.0.2.15/32", "junk"])


def test_a_legacy_range_the_policy_refuses_still_blocks_addresses_inside_it() -> None:
    """A /24 stored before the rules is ignored by the index; if another tenant could
    register an address inside it, that /32 would be the index's only claim and receive the
    legacy device's mail. Every stored range counts, whatever the policy says of it."""
    legacy = ["10.0.0.0/24"]
    assert AllowlistIndex([("victim", legacy)], SINGLE).ignored == legacy
    with pytest.raises(AllowlistOverlap):
        check_unclaimed(check_ranges(["10.0.0.5"], SINGLE), legacy)
    for everything in ("0.0.0.0/0", "::/0"):
        with pytest.raises(AllowlistOverlap):
            check_unclaimed(check_ranges(["192.0.2.16", "2001:db8::f"], SINGLE), [everything])
    check_unclaimed(check_ranges(["10.0.1.5"], SINGLE), legacy)  # outside it: free


def test_the_index_finds_the_one_device_holding_an_address() -> None:
    index = AllowlistIndex(
        [("fax", ["192.0.2.7/32", "2001:db8::7/128"]), ("floor", ["198.51.100.0/24"])], SUBNETS
    )
    assert index.lookup("192.0.2.7") == "fax" and index.lookup("2001:db8::7") == "fax"
    assert index.lookup("198.51.100.200") == "floor"
    assert index.lookup("192.0.2.8") is None and index.lookup("not-an-ip") is None


def test_overlaps_stored_before_the_rules_let_nobody_in_and_wide_ones_are_ignored() -> None:
    """The attack the rules stop, on data stored before them: a narrower range registered by
    another tenant does not win over the victim's; neither device gets the address."""
    index = AllowlistIndex(
        [("victim", ["192.0.2.0/24"]), ("attacker", ["192.0.2.7/32"]), ("open", ["0.0.0.0/0", "10.0.0.0/8"])],
        SUBNETS,
    )
    assert index.lookup("192.0.2.7") is None
    assert index.lookup("192.0.2.8") == "victim"
    assert index.lookup("203.0.113.1") is None and index.lookup("10.1.1.1") is None
    assert index.ignored == ["0.0.0.0/0", "10.0.0.0/8"]
    # The same device through two of its ranges is still one device.
    assert AllowlistIndex([("one", ["192.0.2.0/24", "192.0.2.7/32"])], SUBNETS).lookup("192.0.2.7") == "one"


def test_an_ipv4_mapped_address_is_the_ipv4_address() -> None:
    """`::ffff:10.0.0.5` is 10.0.0.5 to a dual-stack socket: as another address it could be
    claimed by a second device beside 10.0.0.5, and a mapped peer would miss its device."""
    assert [str(n) for n in check_ranges(["::ffff:10.0.0.5", "::ffff:10.0.0.5/128"], SINGLE)] == [
        "10.0.0.5/32"
    ]
    assert str(parse("::ffff:10.0.0.0/120")) == "10.0.0.0/24"
    assert DeviceRegistration(device_id="d", allow_cidrs=["::ffff:10.0.0.5"]).allow_cidrs == ["10.0.0.5/32"]
    assert DeviceChange(allow_cidrs=["::ffff:10.0.0.5/128"]).allow_cidrs == ["10.0.0.5/32"]
    with pytest.raises(AllowlistRangeRefused, match="every address"):
        check_ranges(["::ffff:0:0/96"], AllowlistPolicy(min_prefix_v4=0, min_prefix_v6=0))
    with pytest.raises(AllowlistOverlap):
        check_unclaimed(check_ranges(["::ffff:10.0.0.5"], SINGLE), ["10.0.0.5/32"])
    with pytest.raises(AllowlistOverlap):  # stored mapped (before this rule), claimed as IPv4
        check_unclaimed(check_ranges(["10.0.0.5"], SINGLE), ["::ffff:10.0.0.5/128"])
    index = AllowlistIndex([("fax", ["10.0.0.5/32"]), ("old", ["::ffff:10.0.0.6/128"])], SINGLE)
    assert index.lookup("::ffff:10.0.0.5") == "fax" and index.lookup("10.0.0.5") == "fax"
    assert index.lookup("10.0.0.6") == "old" and index.lookup("::ffff:10.0.0.6") == "old"
    assert index.lookup("2001:db8::a00:5") is None
