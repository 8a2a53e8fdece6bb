"""juniper_srx on its twin device, through the real driver over NETCONF: Cordon's security policies
(zones read from the device, placed before the site's own) stop a flow while the must-survive one
keeps working, STATEFULLY (no reply policy: replies pass by the session table); the read-back
holds exactly Cordon's objects, first in every zone pair; hit counts count sessions; a policy
naming an undefined address is refused by `commit check` and changes nothing; a policy removed by
hand on the device reads back as drift."""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from agent.drivers.base import ChangeSet, Expectation, Target
from agent.errors import CommandRejected, DeviceError
from agent.lab import netns
from agent.network.state import DeviceState, NftRule
from agent.platforms.capabilities import Counters, ReadsRuleComments, require
from agent.platforms.juniper_junos import srx_parse, srx_render
from agent.platforms.juniper_junos.srx_driver import SrxDriver
from agent.platforms.registry import one_shot
from tests.conftest import Twin
from tests.lab.twinops import wait_for
from tests.platforms.juniper_junos.conftest import matrix
from tests.platforms.precut import banner_connection, delivered, held

pytestmark = [pytest.mark.twin, pytest.mark.twin_lifecycle]

SRX = "srx1"
INET, WAN, SOINS, ADMIN = "ge-0/0/0", "ge-0/0/1", "ge-0/0/2.20", "ge-0/0/2.30"
SCOPE, SRV = "198.18.103.10", "198.18.104.10"
SEGMENT = DeviceState(
    rules=frozenset(
        [
            NftRule("accept", SOINS, ADMIN, SCOPE, SRV, None, 2575, "keep scope-hl7"),
            NftRule("accept", ADMIN, SOINS, SRV, SCOPE, 2575, None, "keep scope-hl7"),
            NftRule("drop", ADMIN, SOINS, tag="segment"),
            NftRule("drop", SOINS, ADMIN, tag="segment"),
        ]
    )
)
ALL_OPEN = {
    "scope-hl7": True,
    "scope-ehr": True,
    "srv-scope-web": True,
    "pc-ehr": True,
    "pc-web": True,
}


def script(state: DeviceState) -> ChangeSet:
    return ChangeSet(tuple(srx_render.script(state).splitlines()), action="test.policies")


def nft(twin: Twin) -> str:
    return netns.run(["nft", "list", "ruleset"], netns=twin.bp.device_ns[SRX]).stdout


def paths(xml: str) -> set[str]:
    """Every element path of an XML reply, namespaces dropped."""
    out: set[str] = set()

    def walk(elem: ET.Element, at: str) -> None:
        here = f"{at}/{elem.tag.rsplit('}', 1)[-1]}"
        out.add(here)
        for child in elem:
            walk(child, here)

    walk(ET.fromstring(xml), "")
    return out


def history(d: SrxDriver) -> str:
    """The device's commit history (the reply without its message id)."""
    reply = d._rpc("<get-commit-information/>", "test")
    return reply[reply.index("<commit-information") :]


def back_to_normal(twin: Twin) -> None:
    with one_shot(Target.of(twin.inv, SRX)) as d:
        d.apply(script(DeviceState()))


def test_policies_cut_a_flow_statefully_while_the_must_survive_one_survives(srx: Twin) -> None:
    assert matrix(srx) == ALL_OPEN  # the site's own `site-permit` policies, default deny-all
    try:
        with one_shot(Target.of(srx.inv, SRX)) as d:
            assert isinstance(d, SrxDriver)
            d.apply(script(SEGMENT))
            d.verify(Expectation(table_present=True, rule_comments=srx_render.comments(SEGMENT)))
            assert set(require(d, ReadsRuleComments).rule_comments() or ()) == (
                srx_render.comments(SEGMENT)
            )
            config = d.committed()
            assert srx_parse.misplaced(config) == []  # Cordon's first in every pair
            order = srx_parse.pair_order(config)[("vlan20", "vlan30")]
            assert order[-1] == "site-permit" and all(
                n.startswith(srx_render.PREFIX) for n in order[:-1]
            )
            # no reply policy: the SRX's session table carries the must-survive flow's replies
            assert not any(" from ge-0/0/2.30 to ge-0/0/2.20 match CORDON-h" in ln
                           for ln in srx_render.script(SEGMENT).splitlines())  # fmt: skip
            assert wait_for(lambda: not matrix(srx)["srv-scope-web"], timeout=10)
            seen = matrix(srx)
            assert seen["scope-hl7"] and seen["pc-web"] and seen["pc-ehr"]
            assert "ct state established,related accept" in nft(srx)  # the twin's own flow
            counts = require(d, Counters).rule_counters()
            drop = next(r for r in SEGMENT.rules if r.iif == ADMIN and r.verdict == "drop")
            keep = next(r for r in SEGMENT.rules if r.iif == SOINS and r.verdict == "accept")
            assert counts[srx_render.counted_as(drop)] > 0  # srv -> scope sessions denied
            assert counts[srx_render.counted_as(keep)] > 0  # scope -> srv sessions permitted
            reply = d._rpc("<get-security-policies-hit-count/>", "test")
            fixture = (
                Path(srx_render.__file__)
                .with_name("fixtures")
                .joinpath("get-security-policies-hit-count.xml")
            )
            assert paths(reply) == paths(fixture.read_text())  # the documented shape
            d.apply(script(DeviceState()))
            d.verify(Expectation(table_present=False))
        assert wait_for(lambda: matrix(srx) == ALL_OPEN, timeout=20)
    finally:
        back_to_normal(srx)


def test_commit_check_refuses_an_undefined_address_and_nothing_changes(srx: Twin) -> None:
    with one_shot(Target.of(srx.inv, SRX)) as d:
        before = d.backup().text
        bad = ChangeSet(
            (
                "set security policies from-zone vlan20 to-zone vlan30 policy CORDON-rdeadbeef "
                "match source-address CORDON-h-198.18.103.99",
            )
        )
        # not a line Cordon sends: refused before anything reaches the device
        with pytest.raises(DeviceError, match="not one Cordon sends"):
            d.apply(bad)
        assert isinstance(d, SrxDriver)
        with d._locked("test"):  # the device's own refusal, by its commit check
            d._rpc(
                '<load-configuration action="set" format="text"><configuration-set>'
                + bad.commands[0]
                + "\nset security policies from-zone vlan20 to-zone vlan30 policy "
                "CORDON-rdeadbeef match destination-address any\nset security policies "
                "from-zone vlan20 to-zone vlan30 policy CORDON-rdeadbeef match application "
                "any\nset security policies from-zone vlan20 to-zone vlan30 policy "
                "CORDON-rdeadbeef then deny</configuration-set></load-configuration>",
                "test",
            )
            with pytest.raises(CommandRejected, match=r"CORDON-h-198\.18\.103\.99 is not defined"):
                d._rpc("<commit-configuration><check/></commit-configuration>", "test")
        after = d.backup().text
    assert before.splitlines()[1:] == after.splitlines()[1:]
    assert matrix(srx) == ALL_OPEN


def test_a_policy_removed_on_the_device_reads_back_as_drift(srx: Twin) -> None:
    try:
        with one_shot(Target.of(srx.inv, SRX)) as d:
            assert isinstance(d, SrxDriver)
            d.apply(script(SEGMENT))
            drop = next(r for r in SEGMENT.rules if r.iif == ADMIN and r.verdict == "drop")
            name = srx_render.counted_as(drop)
            with d._locked("test"):  # an operator deletes one of Cordon's policies
                d._rpc(
                    '<load-configuration action="set" format="text"><configuration-set>'
                    f"delete security policies from-zone vlan30 to-zone vlan20 policy {name}"
                    "</configuration-set></load-configuration>",
                    "test",
                )
                d._rpc("<commit-configuration><log>hand</log></commit-configuration>", "test")
            with pytest.raises(DeviceError, match="security policies differ"):
                d.verify(Expectation(rule_comments=srx_render.comments(SEGMENT)), timeout=0.0)
        assert wait_for(lambda: matrix(srx)["srv-scope-web"], timeout=10)  # really open again
    finally:
        back_to_normal(srx)


def test_a_count_rule_counts_the_sessions_of_what_it_overlaps(srx: Twin) -> None:
    """A reconnection's counter (count then accept soins -> WAN, the WAN cut otherwise): its
    overlap policy permits the monitor's sessions to the EHR and its hit count counts them."""
    count = NftRule("count", iif=SOINS, oif=WAN, tag="reconnect soins")
    state = DeviceState(
        rules=frozenset(
            {
                count,
                NftRule("accept", iif=SOINS, oif=WAN, tag="reconnect soins"),
                NftRule("accept", iif=WAN, oif=SOINS, tag="reconnect soins"),
                NftRule("drop", iif=WAN, tag="cut wan"),
                NftRule("drop", oif=WAN, tag="cut wan"),
            }
        )
    )
    try:
        with one_shot(Target.of(srx.inv, SRX)) as d:
            d.apply(script(state))
            assert wait_for(lambda: not matrix(srx)["pc-ehr"], timeout=10)
            assert matrix(srx)["scope-ehr"]
            counts = require(d, Counters).rule_counters()
            assert counts[srx_render.counted_as(count)] > 0
    finally:
        back_to_normal(srx)
    assert wait_for(lambda: matrix(srx) == ALL_OPEN, timeout=20)


def test_an_interface_in_no_zone_is_refused_and_nothing_is_sent(srx: Twin) -> None:
    """The zones are the device's: once an operator takes the admin unit out of its zone, a
    policy for it cannot be written; the driver refuses, the device's commit history unchanged."""
    with one_shot(Target.of(srx.inv, SRX)) as d:
        assert isinstance(d, SrxDriver)
        with d._locked("test"):
            d._rpc(
                '<load-configuration action="set" format="text"><configuration-set>'
                "set security zones security-zone vlan30\n"  # the zone stays (site policies)
                "delete security zones security-zone vlan30 interfaces ge-0/0/2.30"
                "</configuration-set></load-configuration>",
                "test",
            )
            d._rpc("<commit-configuration><log>hand</log></commit-configuration>", "test")
        try:
            before = history(d)
            with pytest.raises(DeviceError, match=r"ge-0/0/2\.30 is in no security zone"):
                d.apply(script(SEGMENT))
            assert history(d) == before
        finally:
            with d._locked("test"):
                d._rpc(
                    '<load-configuration action="set" format="text"><configuration-set>'
                    "set security zones security-zone vlan30 interfaces ge-0/0/2.30"
                    "</configuration-set></load-configuration>",
                    "test",
                )
                d._rpc("<commit-configuration><log>hand</log></commit-configuration>", "test")
    assert wait_for(lambda: matrix(srx) == ALL_OPEN, timeout=20)


def test_a_cut_clears_the_sessions_opened_before_it(srx: Twin) -> None:
    """Connections open before the segment: the admin PC's to the scope (no policy keeps it)
    stops carrying data once the SRX cleared the sessions of its zone's prefixes; the scope's to
    the HL7 server (the must-survive flow, on its own port) goes on through the cut and its
    removal. The clearing is commands of the change, never a prefix holding a must-survive end;
    removing the cut clears nothing."""
    kept = banner_connection(srx, "srx-clinique/soins/scope", SRV, 2575)
    try:
        with (
            held(srx, "srx-clinique/admin/pc", "srx-clinique/soins/scope", SCOPE, 47301) as cut,
            one_shot(Target.of(srx.inv, SRX)) as d,
        ):
            assert isinstance(d, SrxDriver)
            assert cut.carries(b"before") and delivered(kept, b"before\n")
            done = d.apply(script(SEGMENT))
            clears = [c for c in done.commands if c.startswith("clear security flow session ")]
            assert clears and "flow sessions cleared" in done.output
            prefixes = [ipaddress.IPv4Network(c.rsplit(" ", 1)[1]) for c in clears]
            assert not any(ipaddress.IPv4Address(a) in p for p in prefixes for a in (SCOPE, SRV))
            assert any(ipaddress.IPv4Address("198.18.104.20") in p for p in prefixes)
            assert delivered(kept, b"after the cut\n")
            assert not cut.carries(b"after the cut")
            back = d.apply(script(DeviceState()))
            assert not any(c.startswith("clear security") for c in back.commands)
            assert delivered(kept, b"after the rollback\n")
            with pytest.raises(CommandRejected, match="invalid prefix"):
                d._rpc(
                    "<clear-flow-session><source-prefix>198.18.104.0/24;all</source-prefix>"
                    "</clear-flow-session>",
                    "test",
                )
    finally:
        kept.close()
        back_to_normal(srx)
    assert wait_for(lambda: matrix(srx) == ALL_OPEN, timeout=20)
