"""Which flow sessions a Junos SRX cut clears, without a device: only the deny policies a change
adds; their addresses, or the connected subnets of the interfaces they name (every interface for
`any`); never a must-survive end nor the device's own address (their subnets cleared as the
fewest prefixes that leave them out); one prefix per RPC, as XML built from parsed prefixes."""

from __future__ import annotations

import ipaddress

import pytest

from agent.network.state import DeviceState, NftRule
from agent.platforms.juniper_junos import srx_render, srx_sessions

IF = ipaddress.IPv4Interface
A = ipaddress.IPv4Address
INTERFACES: dict[str, ipaddress.IPv4Interface | None] = {
    "fxp0": None,
    "ge-0/0/0": IF("198.18.100.1/30"),
    "ge-0/0/1": IF("198.18.101.1/30"),
    "ge-0/0/2": None,
    "ge-0/0/2.20": IF("198.18.103.1/24"),
    "ge-0/0/2.30": IF("198.18.104.1/24"),
}
SOINS, ADMIN = "ge-0/0/2.20", "ge-0/0/2.30"
SCOPE, SRV = "198.18.103.10", "198.18.104.10"
KEEP = NftRule("accept", SOINS, ADMIN, SCOPE, SRV, None, 2575, "keep scope-hl7")
SEGMENT = [
    NftRule("drop", ADMIN, SOINS, tag="segment"),
    NftRule("drop", SOINS, ADMIN, tag="segment"),
]


def lines(*rules: NftRule) -> list[str]:
    return srx_render.script(DeviceState(rules=frozenset(rules))).splitlines()


def covered(clear: srx_sessions.Clear) -> set[ipaddress.IPv4Address]:
    return {h for p in clear.prefixes for h in p}


def test_a_segment_clears_both_subnets_but_the_must_survive_ends_and_the_device() -> None:
    clear = srx_sessions.plan(lines(KEEP, *SEGMENT), "", INTERFACES)
    both = {h for n in ("198.18.103.0/24", "198.18.104.0/24") for h in ipaddress.IPv4Network(n)}
    assert covered(clear) == both - {A(SCOPE), A(SRV), A("198.18.103.1"), A("198.18.104.1")}
    assert clear.kept == (A(SCOPE), A(SRV))
    assert len(clear.prefixes) <= 2 * 2 * 8  # the fewest prefixes around 4 left-out addresses
    rpcs = clear.rpcs()
    assert len(rpcs) == 2 * len(clear.prefixes)
    rpc, cli = rpcs[0]
    assert rpc == (
        f"<clear-flow-session><source-prefix>{clear.prefixes[0]}</source-prefix>"
        "</clear-flow-session>"
    )
    assert cli == f"clear security flow session source-prefix {clear.prefixes[0]}"


def test_a_deny_naming_an_address_clears_that_address() -> None:
    pc = NftRule("drop", saddr="198.18.104.20", tag="quarantine")
    clear = srx_sessions.plan(lines(pc), "", INTERFACES)
    assert clear.prefixes == (ipaddress.IPv4Network("198.18.104.20/32"),)


def test_a_deny_left_any_stands_for_every_interface() -> None:
    wan = NftRule("drop", oif="ge-0/0/1", tag="cut-wan")
    hosts = covered(srx_sessions.plan(lines(wan), "", INTERFACES))
    assert A("198.18.104.20") in hosts and A("198.18.100.2") in hosts


def test_only_the_deny_policies_a_change_adds_clear() -> None:
    """A re-run (its policies already committed), a rollback and an opening clear nothing."""
    before = "\n".join(
        f"set security policies from-zone a to-zone b policy {ln.split()[1]} then deny"
        for ln in lines(KEEP, *SEGMENT)
        if ln.startswith("policy ")
    )
    assert srx_sessions.plan(lines(KEEP, *SEGMENT), before, INTERFACES).prefixes == ()
    assert srx_sessions.plan([], before, INTERFACES).prefixes == ()
    assert srx_sessions.plan(lines(KEEP), "", INTERFACES).prefixes == ()


@pytest.mark.parametrize(
    "bad",
    [
        "policy CORDON-r0000000a from any to any match CORDON-h-1.2.3.4 any any then deny",
        "address CORDON-h-1.2.3.4 1.2.3.4/32</source-prefix>",
        "clear security flow session all",
    ],
)
def test_a_line_the_renderer_would_not_write_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        srx_sessions.plan([bad], "", INTERFACES)
