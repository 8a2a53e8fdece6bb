"""The aruba_aoscx driver against its twin switch, with real effects in the namespace: a port shut
over REST cuts the flow behind it; Cordon's ACLs on the VLAN interfaces stop a flow while the
must-survive one keeps working; `checkpoint auto` reverts by itself when the agent dies before
confirming (real flows), and keeps a confirmed change; a wrong certificate pin sends nothing and
a wrong password is an AuthError."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.drivers.base import ChangeSet, Expectation, Target
from agent.errors import AuthError, CertificateError
from agent.lab import netns
from agent.network.state import DeviceState, NftRule
from agent.platforms.aruba_aoscx import parse, render
from agent.platforms.aruba_aoscx.driver import AoscxDriver
from agent.platforms.capabilities import DeadMan, ReadsRuleComments
from agent.platforms.registry import one_shot
from tests.conftest import ROOT, Twin, matrix
from tests.lab.twinops import wait_for
from tests.platforms.aruba_aoscx.conftest import INVENTORY, MINUTE_S

pytestmark = [pytest.mark.twin, pytest.mark.twin_lifecycle]  # its own twin: before the session's

SW = "sw1"
QUARANTINE = DeviceState(
    rules=frozenset(
        {
            NftRule(
                "accept",
                "vlan110",
                "vlan120",
                "198.18.96.10",
                "198.18.97.10",
                None,
                2575,
                "keep icu-central",
            ),
            NftRule(
                "accept",
                "vlan120",
                "vlan110",
                "198.18.97.10",
                "198.18.96.10",
                2575,
                None,
                "keep icu-central",
            ),
            NftRule("drop", iif="vlan120", tag="quarantine servers"),
            NftRule("drop", oif="vlan120", tag="quarantine servers"),
        }
    )
)
NONE = DeviceState()


def acl_change(state: DeviceState, action: str) -> ChangeSet:
    return ChangeSet(tuple(render.script(state).splitlines()), action=action)


def kernel_up(twin: Twin, kernel: str) -> bool:
    out = netns.run(["ip", "-o", "link", "show", kernel], netns=twin.bp.device_ns[SW]).stdout
    return "UP" in out.split("<", 1)[1].split(">", 1)[0].split(",")


def api_log(twin: Twin) -> str:
    return (twin.state.dir / SW / "aoscx-api.out").read_text(encoding="utf-8", errors="replace")


def test_shutdown_takes_the_port_down_and_cuts_its_flow(aoscx: Twin) -> None:
    """`interface 1/1/3` / `shutdown` over REST: the kernel port goes down, its flow stops, the
    other one keeps working; `no shutdown` brings both back."""
    target = Target.of(aoscx.inv, SW)
    with one_shot(target) as drv:
        drv.apply(ChangeSet(tuple(render.shut_lines(["1/1/3"], down=True))))
        drv.verify(Expectation(admin_up={"1/1/3": False}))
        assert not kernel_up(aoscx, "1-1-3")
        assert wait_for(
            lambda: matrix(aoscx) == {"icu-central": True, "icu-files": False}, timeout=10
        )
        drv.apply(ChangeSet(tuple(render.shut_lines(["1/1/3"], down=False))))
        drv.verify(Expectation(admin_up={"1/1/3": True}))
    assert kernel_up(aoscx, "1-1-3")
    assert wait_for(lambda: all(matrix(aoscx).values()), timeout=10)


def running_interfaces(drv: object) -> dict[str, Any]:
    """The switch's interfaces in its running configuration (the backup's JSON)."""
    assert isinstance(drv, AoscxDriver)
    return dict(json.loads(drv.facts().config)["Interface"])


def bridge_of(twin: Twin, kernel: str) -> str | None:
    out = netns.run(["ip", "-j", "link", "show", kernel], netns=twin.bp.device_ns[SW]).stdout
    master = json.loads(out)[0].get("master")
    return None if master is None else str(master)


def test_port_writes_keep_the_ports_own_configuration(aoscx: Twin) -> None:
    """Shut then reopen port 1/1/3, quarantine then reopen the VLAN interfaces: every other
    writable attribute (the port's description and access VLAN, the VLAN interfaces' description
    and address) is what it was, the port is still in its VLAN's bridge and every flow works
    (AOS-CX's PUT replaces every writable attribute: the driver must send them all back)."""
    target = Target.of(aoscx.inv, SW)
    with one_shot(target) as drv:
        before = running_interfaces(drv)
        assert before["1/1/3"]["description"] == "file server"
        assert before["1/1/3"]["vlan_tag"] == {"120": "/rest/v10.09/system/vlans/120"}
        assert before["vlan120"]["ip4_address"] == "198.18.97.1/24"
        bridge = bridge_of(aoscx, "1-1-3")
        assert bridge is not None
        drv.apply(ChangeSet(tuple(render.shut_lines(["1/1/3"], down=True))))
        drv.apply(ChangeSet(tuple(render.shut_lines(["1/1/3"], down=False))))
        drv.apply(acl_change(QUARANTINE, "test.quarantine"))
        drv.apply(acl_change(NONE, "test.reopen"))
        drv.verify(Expectation(admin_up={"1/1/3": True}, table_present=False))
        assert running_interfaces(drv) == before
    assert bridge_of(aoscx, "1-1-3") == bridge
    assert wait_for(lambda: all(matrix(aoscx).values()), timeout=10)


def test_the_twin_resets_what_a_put_leaves_out(aoscx: Twin) -> None:
    """The twin follows AOS-CX's PUT: a body with only admin_state and the ACL references (what
    the driver once sent) resets the port's description and puts it back in VLAN 1, out of its
    VLAN's bridge: its flow stops although the port is up. PUT back whole, it works again."""
    target = Target.of(aoscx.inv, SW)
    path = parse.if_path("1/1/3")
    with one_shot(target) as drv:
        assert isinstance(drv, AoscxDriver)
        whole = drv._get(f"{path}?selector=writable", "test")
        try:
            drv._write(
                "PUT",
                path,
                "test",
                {"admin_state": "up", "aclv4_routed_in_cfg": None, "aclv4_routed_out_cfg": None},
            )
            lost = running_interfaces(drv)["1/1/3"]
            assert lost["description"] is None and lost["vlan_tag"] is None
            assert bridge_of(aoscx, "1-1-3") is None
            assert wait_for(lambda: not matrix(aoscx)["icu-files"], timeout=10)
            assert kernel_up(aoscx, "1-1-3")
        finally:
            drv._write("PUT", path, "test", whole)
        assert running_interfaces(drv)["1/1/3"]["description"] == "file server"
    assert wait_for(lambda: all(matrix(aoscx).values()), timeout=10)


def test_acls_quarantine_a_zone_while_the_must_survive_flow_survives(aoscx: Twin) -> None:
    """Cordon's ACLs on vlan110/vlan120 (routed-in and routed-out): the file server is cut, the
    ICU's must-survive flow to the central station keeps working; the read-back holds exactly
    the planned entries; the empty set removes every Cordon ACL and reopens everything."""
    target = Target.of(aoscx.inv, SW)
    try:
        with one_shot(target) as drv:
            drv.apply(acl_change(QUARANTINE, "test.quarantine"))
            drv.verify(Expectation(table_present=True, rule_comments=render.comments(QUARANTINE)))
            assert isinstance(drv, ReadsRuleComments)
            assert set(drv.rule_comments() or ()) == render.comments(QUARANTINE)
            assert render.script(QUARANTINE) == drv.facts().ours  # exact read-back
        table = netns.run(
            ["nft", "list", "table", "inet", "aoscx_twin"], netns=aoscx.bp.device_ns[SW]
        ).stdout
        assert "CORDON-IN-vlan120" in table  # the switch's own filtering, from its own ACLs
        assert wait_for(
            lambda: matrix(aoscx) == {"icu-central": True, "icu-files": False}, timeout=10
        )
    finally:
        with one_shot(target) as drv:
            drv.apply(acl_change(NONE, "test.reopen"))
            drv.verify(Expectation(table_present=False))
    assert wait_for(lambda: all(matrix(aoscx).values()), timeout=10)


KILLED_AGENT = """
import os, signal, sys
from agent.drivers.base import ChangeSet, Target
from agent.inventory import load
from agent.platforms.aruba_aoscx import parse, render
from agent.platforms.aruba_aoscx.driver import AoscxDriver
from agent.platforms.registry import one_shot
from agent.network.state import DeviceState
inv = load(sys.argv[1])
reopen = ChangeSet(tuple(render.script(DeviceState()).splitlines()), action="test.reopen")
with one_shot(Target.of(inv, "sw1")) as drv:
    drv.arm_revert(ChangeSet(()), 30)   # checkpoint auto 1: one minute, 3 s on the twin
    drv.apply(reopen)
    print("applied", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the agent dies before it confirms
"""


def test_agent_killed_before_confirm_the_switch_reverts_by_itself(aoscx: Twin) -> None:
    """Quarantine in place; an agent arms `checkpoint auto 1`, reopens the zone and is killed
    with SIGKILL before confirming: the file server flow is open for a while, then the switch
    restores the quarantine alone (real flow closed, the ACLs read back as before), and a late
    confirm says it fired."""
    target = Target.of(aoscx.inv, SW)
    try:
        with one_shot(target) as drv:
            drv.apply(acl_change(QUARANTINE, "test.quarantine"))
        assert wait_for(lambda: not matrix(aoscx)["icu-files"], timeout=10)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", KILLED_AGENT, str(INVENTORY)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == -9 and "applied" in done.stdout, done.stderr[-2000:]
        assert matrix(aoscx)["icu-files"]  # reopened, for now (the timer has 3 s)
        assert wait_for(lambda: not matrix(aoscx)["icu-files"], timeout=6 * MINUTE_S)
        assert matrix(aoscx)["icu-central"]
        with one_shot(target) as drv:
            assert isinstance(drv, ReadsRuleComments) and isinstance(drv, DeadMan)
            assert set(drv.rule_comments() or ()) == render.comments(QUARANTINE)
            assert drv.confirm("auto-1") is False  # nothing pending: it fired
    finally:
        with one_shot(target) as drv:
            drv.apply(acl_change(NONE, "test.reopen"))
    assert wait_for(lambda: all(matrix(aoscx).values()), timeout=10)


def test_a_confirmed_change_is_kept(aoscx: Twin) -> None:
    """Arm, quarantine, confirm in time (read back in `show checkpoint`): past the timer the
    quarantine is still there."""
    target = Target.of(aoscx.inv, SW)
    try:
        with one_shot(target) as drv:
            assert isinstance(drv, DeadMan)
            token = drv.arm_revert(acl_change(NONE, "undo"), 30)
            drv.apply(acl_change(QUARANTINE, "test.quarantine"))
            assert drv.confirm(token) is True
        wait_for(lambda: False, timeout=2 * MINUTE_S)  # past the switch's deadline
        assert matrix(aoscx) == {"icu-central": True, "icu-files": False}
        with one_shot(target) as drv:
            assert isinstance(drv, ReadsRuleComments)
            assert set(drv.rule_comments() or ()) == render.comments(QUARANTINE)
    finally:
        with one_shot(target) as drv:
            drv.apply(acl_change(NONE, "test.reopen"))


def test_wrong_pin_sends_nothing(aoscx: Twin, tmp_path: Path) -> None:
    """Another certificate pinned: CertificateError, and the switch received no request."""
    pins = tmp_path / "pins"
    pins.write_text(f"{SW} sha256:{'0' * 64}\n")
    target = dataclasses.replace(Target.of(aoscx.inv, SW), tls_pins=pins)
    before = api_log(aoscx)
    with pytest.raises(CertificateError), one_shot(target):
        pass
    assert api_log(aoscx) == before


def test_bad_password_is_an_auth_error(aoscx: Twin, tmp_path: Path) -> None:
    """A wrong password: the switch answers 401 to the login, the driver raises AuthError."""
    (tmp_path / "pw").write_text("not-the-password\n")
    os.chmod(tmp_path / "pw", 0o600)
    device = Target.of(aoscx.inv, SW).device
    https = device.https
    assert https is not None
    bad = device.model_copy(update={"https": https.model_copy(update={"password": "file:pw"})})
    target = dataclasses.replace(Target.of(aoscx.inv, SW), device=bad, base_dir=tmp_path)
    with pytest.raises(AuthError), one_shot(target):
        pass
    assert "POST /rest/v10.09/login -> 401" in api_log(aoscx)


def test_the_confirm_is_read_past_the_warning_the_switch_printed_into_the_arming_login(
    aoscx: Twin,
) -> None:
    """The switch warns the login that armed `checkpoint auto` (HPE's CLI guide: WARNING
    Please "checkpoint auto confirm" within N minutes, then a prompt); the confirm over that
    login, with the warning unread in it, says confirmed, and the switch keeps the change."""
    out = aoscx.state.dir / SW / "aoscx-api.out"
    before = out.read_text(errors="replace").count("Restoration successful")
    target = Target.of(aoscx.inv, SW)
    with one_shot(target) as drv:
        assert isinstance(drv, AoscxDriver)
        token = drv.arm_revert(acl_change(NONE, "undo"), 30)
        kept = drv._cli
        assert kept is not None
        assert wait_for(kept.chan.recv_ready, timeout=2 * MINUTE_S)  # the warning, unread
        assert drv.confirm(token) is True
    wait_for(lambda: False, timeout=2 * MINUTE_S)  # past the switch's deadline
    assert out.read_text(errors="replace").count("Restoration successful") == before
