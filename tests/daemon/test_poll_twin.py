"""The daemon's poller on the twin. An isolation is pushed through the drivers and recorded; someone
then undoes it by hand on the device (a port re-enabled in the switch's CLI, our nft table
deleted on a Linux firewall, a hole punched in it, Cordon's policies deleted through a FortiGate's
own API): the next poll raises exactly that alarm, audited, and a real TCP probe shows the flow
reopened. Re-applying the record (in the device's own syntax) cuts the flow again and the alarm
clears at the next poll; put back by hand, it clears too. A device the agent cannot reach is
reported unreachable, never as drift, and its alarm stays open."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent import audit
from agent.drivers import ChangeSet, Expectation, Target, Timeouts, Via, tls
from agent.drivers.pool import Pool
from agent.engine.drift import Drift
from agent.engine.render import render
from agent.lab import build, daemons, flows, netns
from agent.network.state import NORMAL, DeviceState, NftRule
from agent.platforms import registry
from agent.platforms.cisco_ios.render import ios_lines
from agent.platforms.linux_nftables.render import nft_table
from agent.platforms.registry import one_shot
from agent.platforms.spec import Rules
from agent.run.transaction import expectation
from agent.secrets import resolve
from agent.service.health import HealthStore
from agent.service.poll import DevicePoll, Poller, PollReport, reapply_recorded
from tests import secret_scan
from tests.conftest import Twin
from tests.daemon.fakes import records
from tests.drivers import twinhelp as th
from tests.lab.twinops import wait_for

pytestmark = pytest.mark.twin

# the BMS controller's access port on an IOS switch (the hand-made change below is FRR's vtysh)
SW, PORT = "nts-sw1", "gi17"
SW_FLOW = "nts-it-bms"  # jump-host -> bms-controller:modbus, through that port
SHUT_BMS = DeviceState().shut(PORT, "cli")
FW = "bz2-fw1"  # a Linux firewall: the hand-made changes below are nft commands
FW_SITE = "bretagne-etab-2"
FW_FLOWS = {"bz2-admin-internet", "bz2-guest-internet"}  # through its internet link
FGT = "nts-fw1"  # a FortiGate: Cordon's policies, changed by hand through its REST API
FGT_SITE = "nantes-jules-verne"
FGT_FLOWS = {"nts-admin-internet", "nts-guest-internet"}
CUT_INTERNET = DeviceState().with_rules(
    [
        NftRule("drop", iif="inet0", tag="test-drift: cut internet"),
        NftRule("drop", oif="inet0", tag="test-drift: cut internet"),
    ]
)


@dataclass
class Rig:
    """A poller on the twin with the records a test makes (no re-application unless asked)."""

    twin: Twin
    pool: Pool
    store: HealthStore
    log_dir: Path
    states: dict[str, DeviceState] = field(default_factory=dict)
    poller: Poller = field(init=False)

    def __post_init__(self) -> None:
        self.poller = Poller(
            self.twin.inv, self.pool, lambda: dict(self.states), self.store, device_timeout=30.0
        )

    def __repr__(self) -> str:  # a failing test shows its arguments: no secrets, no noise
        return "Rig()"

    def reapply(self, device: str) -> bool:
        """The daemon's `on_drift: reapply` policy."""
        reapply_recorded(self.pool, self.twin.inv, device, self.states[device])
        return True

    def push(self, device: str, method: str, lines: list[str], state: DeviceState) -> None:
        """Apply an isolation through the driver, verify it, and record it."""
        via: Via = "snmp" if method == "snmp" else "ssh"
        exp = expectation(method, NORMAL, state)
        self.pool.run(device, lambda d: d.apply(ChangeSet(tuple(lines), action="test")), via=via)
        self.pool.run(device, lambda d: d.verify(exp), via=via)
        self.states[device] = state

    def events(self, name: str) -> list[dict[str, Any]]:
        return records(self.log_dir, name)


@pytest.fixture
def rig(twin: Twin, tmp_path: Path) -> Iterator[Rig]:
    """A fresh audit trail, health store and pool; whatever the test did to the two devices
    is undone after (the twin is shared by the session)."""
    log_dir = tmp_path / "logs"
    audit.configure(log_dir, console=False, seal_interval=0)
    timeouts = Timeouts(connect=5.0, command=8.0, snmp=1.0, snmp_retries=1)
    pool = Pool(twin.inv, keepalive=None, timeouts=timeouts)
    store = HealthStore(tmp_path / "health.sqlite")
    r = Rig(twin, pool, store, log_dir)
    try:
        yield r
    finally:
        r.poller.close()
        pool.close()
        store.close()
        ns = twin.bp.device_ns
        daemons.vtysh(
            ns[SW], build.frr_pathspace(twin.state.lab, SW), "configure terminal",
            f"interface {PORT}", "no shutdown",
        )  # fmt: skip
        netns.run(["nft", "delete", "table", "inet", "cordon"], netns=ns[FW], check=False)
        with one_shot(Target.of(twin.inv, FGT)) as fgt:  # none of Cordon's policies left
            fgt.apply(ChangeSet(tuple(own_rules(twin, FGT).script(NORMAL).splitlines())))
        audit.close()
        assert secret_scan.scan_tree(log_dir, twin.secrets) == []


def own_rules(twin: Twin, device: str) -> Rules:
    """How `device` holds Cordon's packet rules (its platform's own syntax)."""
    found = twin.inv.find_device(device)
    assert found is not None
    rules = registry.platform(str(found[1].platform)).rules
    assert rules is not None
    return rules


def fortios_by_hand(twin: Twin, device: str, method: str, path: str) -> dict[str, Any]:
    """An administrator's own call to the FortiGate's REST API (`/api/v2/<path>`, its token,
    its pinned certificate), not through Cordon's driver: its JSON answer."""
    target = Target.of(twin.inv, device)
    assert target.device.https is not None and target.device.https.token is not None
    token = resolve(target.device.https.token, base_dir=target.base_dir, what="test token")
    conn = tls.connect(target, 10.0)
    try:
        conn.request(method, f"/api/v2/{path}", headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        body = json.loads(resp.read() or b"{}")
    finally:
        conn.close()
    assert resp.status == 200, (method, path, resp.status)
    return dict(body)


def delete_cordon_policies(twin: Twin, device: str) -> list[str]:
    """Delete by hand every policy of Cordon's on the FortiGate: the firewall policies named
    cordon-... and the local-in policies (no name field) whose comment starts with cordon-;
    the names of the firewall policies."""
    policies = fortios_by_hand(twin, device, "GET", "cmdb/firewall/policy")["results"]
    ours = [p for p in policies if str(p.get("name", "")).startswith("cordon-")]
    for p in ours:
        fortios_by_hand(twin, device, "DELETE", f"cmdb/firewall/policy/{p['policyid']}")
    local = fortios_by_hand(twin, device, "GET", "cmdb/firewall/local-in-policy")["results"]
    for p in local:
        if str(p.get("comments", "")).startswith("cordon-"):
            path = f"cmdb/firewall/local-in-policy/{p['policyid']}"
            fortios_by_hand(twin, device, "DELETE", path)
    return [str(p["name"]) for p in ours]


def open_flows(twin: Twin, names: set[str]) -> set[str]:
    """Which of the flows `names` connect right now (real TCP from their source host)."""
    chosen = [f for f in twin.inv.flows if f.name in names]
    assert {f.name for f in chosen} == names
    return {o.flow.name for o in flows.observe(twin.inv, twin.bp, flows=chosen) if o.observed_open}


def snmp_shows(twin: Twin, device: str, interface: str, *, up: bool) -> None:
    """Wait until the device's SNMP agent reports the interface so (net-snmp caches its
    ifTable for a few seconds: the poller reads what the agent says, not the kernel)."""
    with one_shot(Target.of(twin.inv, device), via="snmp") as drv:
        drv.verify(Expectation(admin_up={interface: up}), timeout=20.0, action="test.wait")


def device(report: PollReport, name: str) -> DevicePoll:
    [found] = [d for d in report.devices if d.device == name]
    return found


def test_port_reenabled_by_hand_is_alarmed_then_cut_again(twin: Twin, rig: Rig) -> None:
    assert open_flows(twin, {SW_FLOW}) == {SW_FLOW}, "the twin must start in normal mode"
    rig.push(SW, "cli", ios_lines([PORT], down=True), SHUT_BMS)
    assert wait_for(lambda: open_flows(twin, {SW_FLOW}) == set(), timeout=10)
    snmp_shows(twin, SW, PORT, up=False)
    base = rig.poller.poll_once()
    assert base.with_status("drift") == [], "the twin must match its record before the test"
    assert device(base, SW).status == "ok"

    # someone re-enables the port in the switch's own CLI
    daemons.vtysh(
        twin.bp.device_ns[SW], build.frr_pathspace(twin.state.lab, SW), "configure terminal",
        f"interface {PORT}", "no shutdown",
    )  # fmt: skip
    assert wait_for(lambda: open_flows(twin, {SW_FLOW}) == {SW_FLOW}, timeout=10)
    snmp_shows(twin, SW, PORT, up=True)
    report = rig.poller.poll_once()
    want = Drift(
        SW,
        "interface_up",
        f"interface {PORT} is up, the recorded isolation has it shut (by cli)",
        PORT,
    )
    assert report.opened == [want]
    assert (device(report, SW).status, device(report, SW).drifts) == ("drift", (want,))
    [alarm] = rig.events("drift.alarm")
    assert (alarm["device"], alarm["site"], alarm["kind"], alarm["detail"]) == (
        SW,
        "nantes-jules-verne",
        "interface_up",
        want.detail,
    )
    [stored] = rig.store.open_alarms()
    assert (stored.device, stored.subject, stored.reapplied) == (SW, PORT, 0)
    assert rig.poller.poll_once().opened == []  # still open, not raised twice
    assert len(rig.events("drift.alarm")) == 1

    # the daemon's policy says re-apply: the port is shut again, the flow cut again
    rig.poller.reapply = rig.reapply
    again = rig.poller.poll_once()
    assert again.reapplied == [SW] and device(again, SW).reapplied
    lab = th.Lab(twin.inv, twin.bp, twin.state)
    assert not th.link_up(lab, SW, PORT)
    assert wait_for(lambda: open_flows(twin, {SW_FLOW}) == set(), timeout=10)
    sent = [e for e in rig.events("device.change") if e["action"] == "drift.reapply"]
    assert [(e["device"], e["commands"], e["outcome"]) for e in sent] == [
        (SW, [f"interface {PORT}", "shutdown"], "ok")
    ]
    assert [e["outcome"] for e in rig.events("drift.reapplied")] == ["ok"]
    snmp_shows(twin, SW, PORT, up=False)
    cleared = rig.poller.poll_once()
    assert [a.id for a in cleared.cleared] == [stored.id]
    [gone] = rig.events("drift.cleared")
    assert (gone["device"], gone["outcome"], gone["alarm_id"]) == (SW, "reapplied", stored.id)
    assert rig.store.open_alarms() == []
    [kept] = rig.store.alarms()
    assert (kept.status, kept.reapplied) == ("cleared", 1)
    assert rig.store.last_polls()[SW].status == "ok"
    audit.close()
    assert audit.verify(rig.log_dir).ok


def test_table_deleted_or_holed_by_hand_is_alarmed_cleared_reapplied(twin: Twin, rig: Rig) -> None:
    fw_ns = twin.bp.device_ns[FW]
    assert open_flows(twin, FW_FLOWS) == FW_FLOWS, "the twin must start in normal mode"
    rig.push(FW, "nft", nft_table(CUT_INTERNET).splitlines(), CUT_INTERNET)
    assert wait_for(lambda: open_flows(twin, FW_FLOWS) == set(), timeout=10)
    assert rig.poller.poll_once().with_status("drift") == []

    # someone deletes our table on the firewall: the internet is back
    netns.run(["nft", "delete", "table", "inet", "cordon"], netns=fw_ns)
    assert wait_for(lambda: open_flows(twin, FW_FLOWS) == FW_FLOWS, timeout=10)
    report = rig.poller.poll_once()
    missing = Drift(
        FW,
        "table_missing",
        "table inet cordon is missing: the recorded isolation has 4 rules in it",
        "table inet cordon",
    )
    assert report.opened == [missing]
    [alarm] = rig.events("drift.alarm")
    assert (alarm["device"], alarm["site"], alarm["detail"]) == (FW, FW_SITE, missing.detail)

    # put back by hand exactly as recorded: the alarm clears
    netns.run(["nft", "-f", "-"], netns=fw_ns, input=nft_table(CUT_INTERNET))
    assert wait_for(lambda: open_flows(twin, FW_FLOWS) == set(), timeout=10)
    back = rig.poller.poll_once()
    assert [a.kind for a in back.cleared] == ["table_missing"] and back.opened == []
    assert [e["outcome"] for e in rig.events("drift.cleared")] == ["cleared"]

    # someone punches a hole first in our forward chain
    netns.run(
        ["nft", "insert", "rule", "inet", "cordon", "forward", "accept", "comment", '"by hand"'],
        netns=fw_ns,
    )
    assert wait_for(lambda: open_flows(twin, FW_FLOWS) == FW_FLOWS, timeout=10)
    holed = rig.poller.poll_once()
    assert holed.opened == [
        Drift(
            FW, "rule_unexpected", "table inet cordon has an unexpected rule 'by hand'", "by hand"
        )
    ]
    rig.poller.reapply = rig.reapply
    fixed = rig.poller.poll_once()
    assert fixed.reapplied == [FW]
    assert wait_for(lambda: open_flows(twin, FW_FLOWS) == set(), timeout=10)
    lab = th.Lab(twin.inv, twin.bp, twin.state)
    assert "by hand" not in th.nft_table(lab, FW, "cordon")
    after = rig.poller.poll_once()
    assert [(a.kind, a.subject) for a in after.cleared] == [("rule_unexpected", "by hand")]
    assert [e["outcome"] for e in rig.events("drift.cleared")] == ["cleared", "reapplied"]
    assert rig.store.open_alarms() == []


def test_fortigate_policies_deleted_by_hand_are_alarmed_and_reapplied(twin: Twin, rig: Rig) -> None:
    """Cordon's policies deleted through the FortiGate's own API: the internet is back, the
    poll raises the alarm naming where the rules live; re-applying sends the FortiGate's own
    script (never an nft one), the internet is cut again and the alarm clears."""
    rules = own_rules(twin, FGT)
    assert open_flows(twin, FGT_FLOWS) == FGT_FLOWS, "the twin must start in normal mode"
    [(method, lines, _undo)] = render(rules_platform(twin, FGT), NORMAL, CUT_INTERNET)
    assert method == rules.method != "nft"
    rig.push(FGT, method, lines, CUT_INTERNET)
    assert wait_for(lambda: open_flows(twin, FGT_FLOWS) == set(), timeout=10)
    assert rig.poller.poll_once().with_status("drift") == []

    assert delete_cordon_policies(twin, FGT) != []  # by hand, on the device
    assert wait_for(lambda: open_flows(twin, FGT_FLOWS) == FGT_FLOWS, timeout=10)
    report = rig.poller.poll_once()
    want = rules.comments(CUT_INTERNET)
    missing = Drift(
        FGT,
        "table_missing",
        f"{rules.home} is missing: the recorded isolation has {len(want)} rules in it",
        rules.home,
    )
    assert report.opened == [missing]
    [alarm] = rig.events("drift.alarm")
    assert (alarm["device"], alarm["site"], alarm["detail"]) == (FGT, FGT_SITE, missing.detail)

    rig.poller.reapply = rig.reapply
    fixed = rig.poller.poll_once()
    assert fixed.reapplied == [FGT]
    assert wait_for(lambda: open_flows(twin, FGT_FLOWS) == set(), timeout=10)
    sent = [e for e in rig.events("device.change") if e["action"] == "drift.reapply"]
    assert [(e["device"], e["commands"], e["outcome"]) for e in sent] == [
        (FGT, rules.script(CUT_INTERNET).splitlines(), "ok")
    ]
    after = rig.poller.poll_once()
    assert [(a.kind, a.device) for a in after.cleared] == [("table_missing", FGT)]
    assert [e["outcome"] for e in rig.events("drift.cleared")] == ["reapplied"]
    assert rig.store.open_alarms() == []


def rules_platform(twin: Twin, device: str) -> str:
    found = twin.inv.find_device(device)
    assert found is not None
    return str(found[1].platform)


def delete_nft_table(twin: Twin, device: str) -> None:
    netns.run(["nft", "delete", "table", "inet", "cordon"], netns=twin.bp.device_ns[device])


def delete_policies(twin: Twin, device: str) -> None:
    assert delete_cordon_policies(twin, device) != []


@pytest.mark.parametrize(
    ("fw", "by_hand"),
    [(FW, delete_nft_table), (FGT, delete_policies)],
    ids=["linux_nftables", "fortigate"],
)
def test_unreachable_is_not_drift_and_keeps_the_alarm_open(
    twin: Twin, rig: Rig, fw: str, by_hand: Callable[[Twin, str], None]
) -> None:
    lab = th.Lab(twin.inv, twin.bp, twin.state)
    [(method, lines, _undo)] = render(rules_platform(twin, fw), NORMAL, CUT_INTERNET)
    rig.push(fw, method, lines, CUT_INTERNET)
    by_hand(twin, fw)
    [alarm] = rig.poller.poll_once().opened
    assert alarm.kind == "table_missing"
    with th.management_cut(lab, fw):
        report = rig.poller.poll_once()
        lost = device(report, fw)
        assert (lost.status, lost.drifts) == ("unreachable", ())
        assert lost.error is not None and fw in lost.error
        assert report.opened == [] and report.cleared == []
        assert rig.store.last_polls()[fw].status == "unreachable"
        [still] = rig.store.open_alarms()
        assert (still.device, still.kind, still.status) == (fw, "table_missing", "open")
    back = rig.poller.poll_once()  # reachable again, and still drifted: the same alarm
    assert device(back, fw).status == "drift"
    assert back.opened == [] and back.cleared == []
    assert len(rig.events("drift.alarm")) == 1
    assert rig.events("drift.cleared") == []
