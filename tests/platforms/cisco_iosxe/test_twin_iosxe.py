"""cisco_iosxe on its twin, with real TCP and link state: a shutdown cuts, an ACL zone block
stops a flow while a must-survive one survives, the ACLs read back exactly and count; the
switch's own revert timer rolls an unconfirmed change back by itself and keeps a confirmed one;
a switch without the configuration archive is reported."""

from __future__ import annotations

import time

import pytest

from agent.drivers.base import ChangeSet, Driver, Expectation, Target
from agent.errors import CommandRejected, DeviceError
from agent.lab import netns
from agent.network.paths import flow_path
from agent.network.state import DeviceState, NftRule, allow_rules
from agent.platforms.capabilities import Counters, DeadMan, ReadsRuleComments, require
from agent.platforms.cisco_iosxe.render import acl_comments, acl_script, shut_lines
from agent.platforms.registry import one_shot
from tests.conftest import Twin, matrix
from tests.lab.twinops import wait_for
from tests.platforms.cisco_iosxe.conftest import MINUTE_S

pytestmark = [pytest.mark.twin, pytest.mark.twin_lifecycle]  # its own twin: before the session's

SW = "site-sw"


def block_state(twin: Twin) -> DeviceState:
    """What block_zones plans at tx-site: soins and admin cut both ways, the must-survive
    pc-to-central kept by its two accepts (the reply one stateful)."""
    flow = twin.inv.flow("pc-to-central")
    assert flow is not None
    keep = allow_rules(flow_path(twin.inv, flow), SW, "must survive: pc-to-central")
    return DeviceState(
        rules=frozenset(
            [
                NftRule("drop", "Vlan110", "Vlan120", tag="block"),
                NftRule("drop", "Vlan120", "Vlan110", tag="block"),
                *keep,
            ]
        )
    )


def script(state: DeviceState, action: str) -> ChangeSet:
    return ChangeSet(tuple(acl_script(state).splitlines()), action=action)


def link_up(twin: Twin, kernel: str) -> bool:
    out = netns.run(["ip", "-o", "link", "show", kernel], netns=twin.bp.device_ns[SW]).stdout
    return "UP" in out.split("<", 1)[1].split(">", 1)[0].split(",")


def test_shutdown_cuts_the_link(pair: Twin) -> None:
    """`interface Gi1/0/5` / `shutdown` takes the port down in the kernel and cuts pc's flows;
    `no shutdown` brings them back; the read-back shows admin down, then up."""
    kernel = pair.bp.ifnames[SW]["Gi1/0/5"]
    with one_shot(Target.of(pair.inv, SW)) as drv:
        drv.apply(ChangeSet(tuple(shut_lines(["Gi1/0/5"], down=True)), action="test.shut"))
        drv.verify(Expectation(admin_up={"Gi1/0/5": False}))
        assert not link_up(pair, kernel)
        assert wait_for(lambda: not matrix(pair)["pc-to-central"], timeout=5)
        drv.apply(ChangeSet(tuple(shut_lines(["Gi1/0/5"], down=False)), action="test.open"))
        drv.verify(Expectation(admin_up={"Gi1/0/5": True}))
    assert link_up(pair, kernel)
    assert wait_for(lambda: all(matrix(pair).values()), timeout=10)


def test_acl_block_keeps_the_must_survive_flow(pair: Twin) -> None:
    """The block's ACLs stop monitor-to-files while pc-to-central (must survive) and the zone's
    own flow keep connecting; they read back exactly, count, and go away with the empty state."""
    state = block_state(pair)
    with one_shot(Target.of(pair.inv, SW)) as drv:
        drv.apply(script(state, "test.block"))
        drv.verify(Expectation(table_present=True, rule_comments=acl_comments(state)))
        assert wait_for(lambda: not matrix(pair)["monitor-to-files"], timeout=5)
        seen = matrix(pair)
        assert seen["pc-to-central"] and seen["monitor-to-central"] and seen["pc-to-ehr"]
        comments = require(drv, ReadsRuleComments).rule_comments()
        assert comments is not None and set(comments) == acl_comments(state)
        counts = require(drv, Counters).rule_counters()
        assert any(v > 0 for v in counts.values()), counts
        drv.apply(script(DeviceState(), "test.unblock"))
        drv.verify(Expectation(table_present=False, rule_comments=frozenset()))
        assert require(drv, ReadsRuleComments).rule_comments() is None
    assert wait_for(lambda: all(matrix(pair).values()), timeout=10)


def deadman(drv: Driver) -> DeadMan:
    return require(drv, DeadMan)


def test_unconfirmed_change_reverts_by_itself(pair: Twin) -> None:
    """Block (the fail-safe here), arm the switch's revert timer, lift the block, never confirm:
    after its minute the switch is blocked again by itself; confirming then says it fired."""
    state = block_state(pair)
    target = Target.of(pair.inv, SW)
    try:
        with one_shot(target) as drv:
            drv.apply(script(state, "test.block"))
            token = deadman(drv).arm_revert(script(state, "test.block"), 60)
            drv.apply(script(DeviceState(), "test.lift"))
        assert wait_for(lambda: matrix(pair)["monitor-to-files"], timeout=MINUTE_S)
        assert wait_for(lambda: not matrix(pair)["monitor-to-files"], timeout=4 * MINUTE_S)
        assert matrix(pair)["pc-to-central"]
        with one_shot(target) as drv:
            drv.verify(Expectation(table_present=True, rule_comments=acl_comments(state)))
            assert deadman(drv).confirm(token) is False
    finally:
        with one_shot(target) as drv:
            drv.apply(script(DeviceState(), "test.cleanup"))
    assert wait_for(lambda: all(matrix(pair).values()), timeout=10)


def test_confirmed_change_is_kept(pair: Twin) -> None:
    """Arm, lift the block, read back, confirm in time: still lifted well past the timer."""
    state = block_state(pair)
    target = Target.of(pair.inv, SW)
    try:
        with one_shot(target) as drv:
            drv.apply(script(state, "test.block"))
            token = deadman(drv).arm_revert(script(state, "test.block"), 60)
            drv.apply(script(DeviceState(), "test.lift"))
            drv.verify(Expectation(table_present=False, rule_comments=frozenset()))
            assert deadman(drv).confirm(token) is True
        time.sleep(2 * MINUTE_S)
        assert matrix(pair)["monitor-to-files"]
        with one_shot(target) as drv:
            drv.verify(Expectation(table_present=False, rule_comments=frozenset()), timeout=0)
    finally:
        with one_shot(target) as drv:
            drv.apply(script(DeviceState(), "test.cleanup"))


def test_missing_archive_is_reported(pair: Twin) -> None:
    """Without `archive` the driver refuses to arm and says what to configure; nothing armed."""
    target = Target.of(pair.inv, SW)
    with one_shot(target) as drv:
        drv.apply(ChangeSet(("no archive",), action="test.noarchive"))
        try:
            with pytest.raises(DeviceError, match="archive is not configured") as err:
                deadman(drv).arm_revert(script(DeviceState(), "x"), 60)
            assert "path" in (err.value.hint or "")
        finally:
            drv.apply(ChangeSet(("archive", "path flash:cordon-archive"), action="test.archive"))
        token = deadman(drv).arm_revert(script(DeviceState(), "x"), 60)
        assert deadman(drv).confirm(token) is True


def test_refused_command_has_the_real_error_shape(pair: Twin) -> None:
    """A line IOS-XE rejects raises CommandRejected carrying `% Invalid input detected`."""
    with one_shot(Target.of(pair.inv, SW)) as drv:
        with pytest.raises(CommandRejected, match="Invalid input detected"):
            drv.apply(ChangeSet(("interface Gi1/0/5", "shutdown now"), action="test.bad"))
        drv.verify(Expectation(admin_up={"Gi1/0/5": True}))
