"""Which connection states a Stormshield cut flushes, without a device: only the block rules a
change adds, a named host or the connected subnets of the interfaces a rule names (every
interface for a side left `any`), never a must-survive end nor the device's own address, a subnet
larger than a /24 reported and not enumerated; the command takes one host address and nothing
else; the twin refuses what is not one host address as serverd's format error."""

from __future__ import annotations

import ipaddress

import pytest

from agent.network.state import DeviceState, NftRule
from agent.platforms.stormshield import flush, render
from agent.platforms.stormshield.twin_api import ERR_FORMAT, Device, Refused

IF = ipaddress.IPv4Interface
A = ipaddress.IPv4Address
INTERFACES: dict[str, ipaddress.IPv4Interface | None] = {
    "mgmt0": None,
    "out": IF("198.18.90.5/30"),
    "wan0": IF("198.18.91.1/29"),
    "lan1": None,
    "lan1.110": IF("198.18.93.62/26"),
    "lan1.120": IF("198.18.94.1/24"),
}
KEEP = NftRule("accept", "lan1.110", "wan0", "198.18.93.11", "198.18.92.20", None, 443, "keep")
SEGMENT = NftRule("drop", "lan1.120", "lan1.110", tag="segment")
CUT_WAN = NftRule("drop", oif="wan0", tag="cut-wan")
QUARANTINE = NftRule("drop", saddr="198.18.94.20", tag="quarantine")


def lines(*rules: NftRule) -> tuple[list[str], list[str]]:
    script = render.script(DeviceState(rules=frozenset(rules))).splitlines()
    return (
        [ln for ln in script if ln.startswith(render.INSERT)],
        [ln for ln in script if ln.startswith("CONFIG OBJECT ")],
    )


def test_a_two_sided_cut_flushes_both_connected_subnets_but_a_must_survive_end() -> None:
    wanted, objects = lines(KEEP, SEGMENT)
    plan = flush.plan(wanted, objects, frozenset(), INTERFACES)
    hosts = set(plan.hosts)
    soins = set(ipaddress.IPv4Network("198.18.93.0/26").hosts())
    admin = set(ipaddress.IPv4Network("198.18.94.0/24").hosts())
    assert hosts == (soins | admin) - {A("198.18.93.11"), A("198.18.93.62"), A("198.18.94.1")}
    assert plan.kept == (A("198.18.93.11"),)
    assert plan.skipped == ()
    assert list(plan.hosts) == sorted(plan.hosts)
    assert plan.commands()[0] == "MONITOR FLUSH STATE 198.18.93.1"


def test_a_one_sided_cut_stands_for_every_interface_with_a_subnet() -> None:
    wanted, objects = lines(CUT_WAN)
    hosts = set(flush.plan(wanted, objects, frozenset(), INTERFACES).hosts)
    assert A("198.18.94.20") in hosts and A("198.18.93.10") in hosts
    assert A("198.18.91.2") in hosts and A("198.18.90.6") in hosts  # the peers' ends
    assert not hosts & {i.ip for i in INTERFACES.values() if i is not None}


def test_a_cut_naming_a_host_flushes_that_host_only() -> None:
    wanted, objects = lines(QUARANTINE)
    assert flush.plan(wanted, objects, frozenset(), INTERFACES).hosts == (A("198.18.94.20"),)


def test_only_the_block_rules_a_change_adds_flush() -> None:
    """A re-run, a rollback (no block rule) and an opening flush nothing."""
    wanted, objects = lines(KEEP, SEGMENT)
    before = render.comments(DeviceState(rules=frozenset([SEGMENT])))
    assert flush.plan(wanted, objects, before, INTERFACES).hosts == ()
    wanted, objects = lines(KEEP)
    assert flush.plan(wanted, objects, frozenset(), INTERFACES).hosts == ()
    assert flush.plan([], [], before, INTERFACES).hosts == ()


def test_a_subnet_larger_than_a_slash_24_is_reported_not_enumerated() -> None:
    wide = dict(INTERFACES, **{"lan1.120": IF("10.20.0.1/16")})
    wanted, objects = lines(SEGMENT)
    plan = flush.plan(wanted, objects, frozenset(), wide)
    assert plan.skipped == ("10.20.0.0/16",)
    assert all(h in ipaddress.IPv4Network("198.18.93.0/26") for h in plan.hosts)
    assert "NOT flushed" in plan.summary() and "10.20.0.0/16" in plan.summary()


def test_a_rule_naming_an_object_the_change_does_not_define_is_refused() -> None:
    wanted, _ = lines(QUARANTINE)
    with pytest.raises(ValueError, match="not a host object"):
        flush.plan(wanted, [], frozenset(), INTERFACES)


@pytest.mark.parametrize(
    "bad", ["198.18.94.20; CONFIG FILTER ACTIVATE", "198.18.94.020", "any", "224.0.0.1", "0.0.0.0"]
)
def test_the_command_takes_one_host_address_only(bad: str) -> None:
    with pytest.raises(ValueError):
        flush.command(bad)


def twin() -> Device:
    return Device(name="t", interfaces={}, slots={}, active="05")


@pytest.mark.parametrize(
    "cmd",
    [
        "MONITOR FLUSH STATE",
        "MONITOR FLUSH STATE 198.18.94.20 198.18.94.21",
        "MONITOR FLUSH STATE 198.18.94.0/24",
        "MONITOR FLUSH STATE host-pc",
        "MONITOR FLUSH STATE 198.18.94.20 rtstate=SIDEWAYS",
        "MONITOR FLUSH STATE 198.18.94.20 all=1",
        'MONITOR FLUSH STATE "198.18.94.20 198.18.94.21"',
    ],
)
def test_the_twin_refuses_a_malformed_flush_as_serverd_does(cmd: str) -> None:
    with pytest.raises(Refused) as err:
        twin().run(cmd)
    assert err.value.part == ERR_FORMAT
