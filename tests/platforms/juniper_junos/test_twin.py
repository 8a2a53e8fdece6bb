"""juniper_junos (an EX, an L3 switch) on its twin device, through the real driver over NETCONF:
`disable` takes the link down and cuts the flow, on its routed uplink, on an access port of a VLAN
and on the trunk (each of its per-VLAN legs); Cordon's filters block a flow while the
must-survive one survives, and their counters count; Junos's own `commit confirmed` rolls back
by itself when nobody confirms (the link and the flow come back), and a confirmed commit stays;
a change refused by `commit check` changes nothing; a wrong host key is refused before anything
is sent."""

from __future__ import annotations

import json
import time

import pytest

from agent.drivers.base import ChangeSet, Expectation, Target
from agent.errors import CommandRejected, HostKeyError
from agent.lab import netns
from agent.network.state import DeviceState, NftRule
from agent.platforms.capabilities import Counters, DeadMan, require
from agent.platforms.juniper_junos import render
from agent.platforms.registry import one_shot
from tests.conftest import Twin
from tests.lab.twinops import wait_for
from tests.platforms.juniper_junos.conftest import MINUTE_S, matrix

pytestmark = [pytest.mark.twin, pytest.mark.twin_lifecycle]

EX = "rv-ex1"
WAN, SOINS, SRV, BUR = "ge-0/0/47", "irb.110", "irb.120", "irb.130"
ACCESS, TRUNK = "ge-0/0/2", "xe-0/1/0"  # the central station's port; the trunk to rv-sw1
PORTS = (WAN, ACCESS, TRUNK)
SCOPE, CENTRALE = "198.18.91.10", "198.18.92.10"
SEGMENT = DeviceState(
    rules=frozenset(
        [
            NftRule("accept", SOINS, SRV, SCOPE, CENTRALE, None, 2575, "keep monitoring"),
            NftRule("accept", SRV, SOINS, CENTRALE, SCOPE, 2575, None, "keep monitoring"),
            NftRule("drop", BUR, SRV, tag="segment"),
            NftRule("drop", SRV, BUR, tag="segment"),
            NftRule("drop", SOINS, SRV, tag="segment"),
            NftRule("drop", SRV, SOINS, tag="segment"),
        ]
    )
)
OTHER_KEY = (  # a valid ed25519 key that is not the device's
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEw0Y1CJ1YmLw8V7n7o8GJ4D0YdS5hQhO0hHb7m3yYZW"
)
ALL_OPEN = {"rv-monitoring": True, "rv-bureau-centrale": True, "rv-bureau-internet": True}


def script(state: DeviceState) -> ChangeSet:
    return ChangeSet(tuple(render.filters_script(state).splitlines()), action="test.filters")


def kernel_up(twin: Twin, ifname: str) -> bool:
    kname = twin.bp.ifnames[EX][ifname]
    out = netns.run(["ip", "-o", "link", "show", kname], netns=twin.bp.device_ns[EX]).stdout
    return "UP" in out.split("<", 1)[1].split(">", 1)[0].split(",")


def legs_up(twin: Twin, ifname: str) -> list[bool]:
    """The admin state of each kernel link of a trunk in the twin (one veth per VLAN)."""
    kname = twin.bp.ifnames[EX][ifname]
    links = json.loads(
        netns.run(["ip", "-j", "link", "show"], netns=twin.bp.device_ns[EX]).stdout or "[]"
    )
    return ["UP" in link["flags"] for link in links if link["ifname"].startswith(f"{kname}.")]


def nft_tables(twin: Twin) -> str:
    return netns.run(["nft", "list", "tables"], netns=twin.bp.device_ns[EX]).stdout


def back_to_normal(twin: Twin) -> None:
    with one_shot(Target.of(twin.inv, EX)) as d:
        d.apply(script(DeviceState()))
        d.apply(ChangeSet(tuple(render.disable_lines(list(PORTS), down=False))))
    assert wait_for(lambda: matrix(twin) == ALL_OPEN, timeout=20)


def test_disable_takes_the_link_down_and_cuts_the_flow(junos: Twin) -> None:
    """`set interfaces ge-0/0/47 disable`: the kernel link goes down, the internet flow stops,
    the read-back says admin down; `delete ... disable` brings both back."""
    assert wait_for(lambda: matrix(junos) == ALL_OPEN, timeout=20)
    with one_shot(Target.of(junos.inv, EX)) as d:
        d.apply(ChangeSet(tuple(render.disable_lines([WAN], down=True))))
        d.verify(Expectation(admin_up={WAN: False}))
        assert not kernel_up(junos, WAN)
        assert wait_for(lambda: not matrix(junos)["rv-bureau-internet"])
        assert matrix(junos)["rv-monitoring"]
        d.apply(ChangeSet(tuple(render.disable_lines([WAN], down=False))))
        d.verify(Expectation(admin_up={WAN: True}))
    assert kernel_up(junos, WAN)
    assert wait_for(lambda: matrix(junos) == ALL_OPEN, timeout=20)


def test_switch_ports_disable_for_real_the_trunk_with_each_of_its_legs(junos: Twin) -> None:
    """The EX as a switch: disabling the central station's access port (VLAN 120) takes its link
    down and stops both flows to it while the office's internet flow goes on; disabling the trunk
    to the access switch takes each of its per-VLAN legs down and stops every flow from behind
    it; the read-back says admin down each time, and `delete ... disable` brings all back."""
    assert wait_for(lambda: matrix(junos) == ALL_OPEN, timeout=20)
    assert len(legs_up(junos, TRUNK)) == 3 and all(legs_up(junos, TRUNK))
    try:
        with one_shot(Target.of(junos.inv, EX)) as d:
            d.apply(ChangeSet(tuple(render.disable_lines([ACCESS], down=True))))
            d.verify(Expectation(admin_up={ACCESS: False, TRUNK: True}))
            assert not kernel_up(junos, ACCESS)
            no_centrale = {**ALL_OPEN, "rv-monitoring": False, "rv-bureau-centrale": False}
            assert wait_for(lambda: matrix(junos) == no_centrale)
            d.apply(ChangeSet(tuple(render.disable_lines([ACCESS], down=False))))
            assert wait_for(lambda: matrix(junos) == ALL_OPEN, timeout=20)
            d.apply(ChangeSet(tuple(render.disable_lines([TRUNK], down=True))))
            d.verify(Expectation(admin_up={TRUNK: False, ACCESS: True}))
            assert not any(legs_up(junos, TRUNK))
            assert wait_for(lambda: not any(matrix(junos).values()))
            d.apply(ChangeSet(tuple(render.disable_lines([TRUNK], down=False))))
            d.verify(Expectation(admin_up={TRUNK: True}))
        assert all(legs_up(junos, TRUNK)) and kernel_up(junos, ACCESS)
        assert wait_for(lambda: matrix(junos) == ALL_OPEN, timeout=20)
    finally:
        back_to_normal(junos)


def test_filters_block_a_flow_while_the_must_survive_one_survives(junos: Twin) -> None:
    """The segmentation's filters on the IRB units: bureau -> centrale is cut, the monitoring
    flow (its accept terms first, replies by tcp-established) keeps working; the read-back shows
    exactly the planned terms; the drop term's counter counts; removing them reopens."""
    spec_rules = render.filter_names(SEGMENT)
    try:
        with one_shot(Target.of(junos.inv, EX)) as d:
            d.apply(script(SEGMENT))
            d.verify(Expectation(table_present=True, rule_comments=spec_rules))
            assert wait_for(lambda: not matrix(junos)["rv-bureau-centrale"])
            seen = matrix(junos)
            assert seen["rv-monitoring"] and seen["rv-bureau-internet"]
            assert "junos_twin" in nft_tables(junos) and "cordon" not in nft_tables(junos)
            counters = require(d, Counters).rule_counters()
            drop = next(r for r in SEGMENT.rules if r.iif == BUR)
            assert counters[f"{render.filter_name(SRV, 'output')}/{render.term_name(drop)}"] > 0
            d.apply(script(DeviceState()))
            d.verify(Expectation(table_present=False))
        assert wait_for(lambda: matrix(junos) == ALL_OPEN, timeout=20)
    finally:
        back_to_normal(junos)


def test_unconfirmed_commit_rolls_back_by_itself(junos: Twin) -> None:
    """Armed, applied as `commit confirmed 1`, then the agent is gone (session closed, never
    confirmed): after its minute the device itself restores the link and the flow."""
    try:
        d_ctx = one_shot(Target.of(junos.inv, EX))
        with d_ctx as d:
            dm = require(d, DeadMan)
            dm.arm_revert(ChangeSet(tuple(render.disable_lines([WAN], down=False))), 30.0)
            d.apply(ChangeSet(tuple(render.disable_lines([WAN], down=True))))
            assert not kernel_up(junos, WAN)
            assert wait_for(lambda: not matrix(junos)["rv-bureau-internet"])
        # nobody will confirm: the device's own timer decides
        assert wait_for(lambda: kernel_up(junos, WAN), timeout=MINUTE_S * 4)
        assert wait_for(lambda: matrix(junos) == ALL_OPEN, timeout=20)
        with one_shot(Target.of(junos.inv, EX)) as d:
            d.verify(Expectation(admin_up={WAN: True}), timeout=0.0)
    finally:
        back_to_normal(junos)


def test_a_confirmed_commit_stays(junos: Twin) -> None:
    """Confirmed in time (checked by reading back), the filters outlive their minute."""
    try:
        with one_shot(Target.of(junos.inv, EX)) as d:
            dm = require(d, DeadMan)
            token = dm.arm_revert(script(DeviceState()), 30.0)
            d.apply(script(SEGMENT))
            assert dm.confirm(token) is True
            time.sleep(MINUTE_S * 2)  # past the deadline the commit would have had
            d.verify(Expectation(rule_comments=render.filter_names(SEGMENT)), timeout=0.0)
        assert not matrix(junos)["rv-bureau-centrale"]
    finally:
        back_to_normal(junos)


def test_an_expired_confirm_says_so_and_commits_nothing(junos: Twin) -> None:
    """A confirm that comes after the rollback returns False and leaves the fail-safe state."""
    try:
        with one_shot(Target.of(junos.inv, EX)) as d:
            dm = require(d, DeadMan)
            token = dm.arm_revert(script(DeviceState()), 30.0)
            d.apply(script(SEGMENT))
            assert wait_for(lambda: matrix(junos)["rv-bureau-centrale"], timeout=MINUTE_S * 5)
            assert dm.confirm(token) is False
            d.verify(Expectation(table_present=False), timeout=0.0)
    finally:
        back_to_normal(junos)


def test_commit_check_failure_changes_nothing(junos: Twin) -> None:
    """A filter attachment to an undefined filter: `commit check` refuses it with the device's
    message, the candidate is discarded, the committed configuration and the flows are as
    before."""
    with one_shot(Target.of(junos.inv, EX)) as d:
        before = d.backup().text
        bad = ChangeSet(
            (f"set interfaces irb unit 120 family inet filter output {render.PREFIX}nope-OUT",)
        )
        with pytest.raises(CommandRejected, match="Referenced filter 'CORDON-nope-OUT'"):
            d.apply(bad)
        after = d.backup().text
    assert before.splitlines()[1:] == after.splitlines()[1:]  # the header names the last commit
    assert matrix(junos) == ALL_OPEN


def test_wrong_host_key_is_refused_before_anything_is_sent(junos: Twin) -> None:
    """Another pinned key: HostKeyError, and the device's sshd saw no authentication."""
    target = Target.of(junos.inv, EX)
    other = target.device.model_copy(
        update={"ssh": target.device.ssh.model_copy(update={"host_key": OTHER_KEY})}
    )
    log = junos.state.dir / EX / "sshd.log"
    accepted = log.read_text().count("Accepted publickey")
    with pytest.raises(HostKeyError), one_shot(Target(other, target.site, target.base_dir, None)):
        pass
    assert log.read_text().count("Accepted publickey") == accepted
