"""Drift detection is a pure comparison of a device's recorded isolation state with what was read
back: each difference is named once, with what it is about; nothing not read is judged; and
re-applying the record only ever closes (whole table, recorded shutdowns), never reopens.

Then the poller's bookkeeping over fake devices (no twin): an alarm is audited once, kept across
a restart, cleared when gone; an unreachable or hung device is not drift and keeps its alarms;
re-application is asked for repairable drift only, never over a run; a renumbered interface
table is walked again."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from agent import audit
from agent.drivers.base import ApplyResult, Backup, ChangeSet, Expectation, Facts, Target, Via
from agent.drivers.pool import Pool
from agent.engine.drift import Drift, Readback, detect, reapply_lines, watched
from agent.errors import ConnectError, DeviceTimeout, SnmpError
from agent.inventory import load as load_inventory
from agent.inventory.models import Inventory
from agent.network.state import NORMAL, DeviceState, NftRule
from agent.platforms import registry
from agent.platforms.linux_nftables import render
from agent.platforms.snmp.mib import IF_ADMIN, IF_DESCR, IF_NAME, IF_OPER
from agent.service.health import HealthStore
from agent.service.poll import DevicePoll, Poller, PollReport

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory" / "hospi-grand-ouest.yaml"

CUT_WAN = [NftRule("drop", iif="wan0", tag="cut-wan"), NftRule("drop", oif="wan0", tag="cut-wan")]
FIREWALL = DeviceState().with_rules(CUT_WAN)
SWITCH = DeviceState().shut("gi3", "cli").shut("gi4", "snmp")
FW_PLATFORM, SW_PLATFORM = "linux_nftables", "cisco_ios"


def comments(state: DeviceState) -> tuple[str, ...]:
    return tuple(sorted(render.nft_comments(state)))


def own_comments(inv: Inventory, device: str, state: DeviceState) -> tuple[str, ...]:
    """The rule comments `device` shows holding `state`, in its own platform's terms."""
    found = inv.find_device(device)
    assert found is not None
    rules = registry.platform(str(found[1].platform)).rules
    assert rules is not None
    return tuple(sorted(rules.comments(state)))


def test_device_as_recorded_has_no_drift() -> None:
    seen = Readback(admin={"gi3": False, "gi4": False}, interfaces_read=True)
    assert detect("sw", SWITCH, seen, SW_PLATFORM) == []
    fw = Readback(
        admin={"wan0": True}, interfaces_read=True, rules=comments(FIREWALL), table_read=True
    )
    assert detect("fw", FIREWALL, fw, FW_PLATFORM) == []
    assert detect("fw", NORMAL, Readback(rules=None, table_read=True), FW_PLATFORM) == []


def test_reenabled_port_is_named_with_how_it_was_shut() -> None:
    seen = Readback(admin={"gi3": True, "gi4": False}, interfaces_read=True)
    assert detect("sw", SWITCH, seen, SW_PLATFORM) == [
        Drift(
            "sw",
            "interface_up",
            "interface gi3 is up, the recorded isolation has it shut (by cli)",
            "gi3",
        )
    ]
    both = detect(
        "sw", SWITCH, Readback(admin={"gi3": True, "gi4": True}, interfaces_read=True), SW_PLATFORM
    )
    assert [(d.subject, d.detail.endswith("(by snmp)")) for d in both] == [
        ("gi3", False),
        ("gi4", True),
    ]
    assert all(d.fixable for d in both)


def test_deleted_table_is_one_drift() -> None:
    [d] = detect("fw", FIREWALL, Readback(rules=None, table_read=True), FW_PLATFORM)
    assert d.kind == "table_missing"
    assert d.detail == "table inet cordon is missing: the recorded isolation has 4 rules in it"
    assert d.fixable
    assert d.scope == "table"


def test_rules_missing_unexpected_duplicated() -> None:
    want = comments(FIREWALL)
    gone, kept = want[0], want[1:]
    rules = (*kept, kept[0], "hand-made", "")
    found = detect("fw", FIREWALL, Readback(rules=rules, table_read=True), FW_PLATFORM)
    assert [(d.kind, d.subject) for d in found] == [
        ("rule_duplicated", kept[0]),
        ("rule_missing", gone),
        ("rule_unexpected", ""),
        ("rule_unexpected", "hand-made"),
    ]
    assert found[1].detail == f"rule {gone!r} missing from table inet cordon"
    assert found[2].detail == "table inet cordon has an unexpected rule without a comment"
    assert found[3].detail == "table inet cordon has an unexpected rule 'hand-made'"
    assert "#" in gone  # the comment carries the rule's id: one comment per rule
    assert {d.fixable for d in found} == {True}


def test_normal_device_leftovers_are_visible_but_not_fixable() -> None:
    leftover = detect(
        "fw", NORMAL, Readback(rules=comments(FIREWALL), table_read=True), FW_PLATFORM
    )
    assert [(d.kind, d.detail) for d in leftover] == [
        (
            "table_unexpected",
            "table inet cordon is present (4 rules), the recorded state has no rule: a leftover",
        )
    ]
    shut = detect(
        "fw",
        NORMAL,
        Readback(admin={"wan0": False, "inet0": True}, interfaces_read=True),
        FW_PLATFORM,
    )
    assert [(d.kind, d.subject, d.detail) for d in shut] == [
        ("interface_down", "wan0", "interface wan0 is shut, no recorded isolation shuts it")
    ]
    assert not any(d.fixable for d in leftover + shut)


def test_missing_interface() -> None:
    [d] = detect(
        "sw",
        SWITCH,
        Readback(admin={"gi4": False}, missing=frozenset({"gi3"}), interfaces_read=True),
        SW_PLATFORM,
    )
    assert (d.kind, d.subject) == ("interface_missing", "gi3")
    assert (
        d.detail == "interface gi3 not found on the device (the recorded isolation shuts it by cli)"
    )
    assert not d.fixable


def test_parts_not_read_are_not_judged() -> None:
    """A table not read is not 'missing'; interfaces not read are not 'up'."""
    assert detect("fw", FIREWALL, Readback(), FW_PLATFORM) == []
    assert (
        detect("fw", FIREWALL, Readback(admin={"wan0": True}, interfaces_read=False), FW_PLATFORM)
        == []
    )
    assert Readback(interfaces_read=True).scopes == {"interfaces"}
    assert Readback(table_read=True).scopes == {"table"}


def test_watched_interfaces() -> None:
    assert watched(SWITCH) == {"gi3", "gi4"}
    assert watched(NORMAL, ["inet0", "wan0"]) == {"inet0", "wan0"}


def test_reapply_closes_only() -> None:
    assert reapply_lines("linux_nftables", FIREWALL) == [
        ("nft", render.nft_table(FIREWALL).splitlines())
    ]
    assert reapply_lines("cisco_ios", SWITCH) == [
        ("cli", ["interface gi3", "shutdown"]),
        ("snmp", ["ifAdminStatus gi4 down"]),
    ]
    # never "re-apply normal": that would delete a leftover table or reopen a port
    assert reapply_lines("linux_nftables", NORMAL) == []
    assert reapply_lines("fortigate", NORMAL) == []
    lines = [line for _, cmds in reapply_lines("cisco_ios", SWITCH) for line in cmds]
    assert not any("no shutdown" in line or line.endswith(" up") for line in lines)


@pytest.mark.parametrize("platform", registry.names(holds_rules=True))
def test_reapply_and_drift_speak_the_devices_own_rules(platform: str) -> None:
    """On every platform holding rules (FortiGate, Stormshield, ...), re-applying a record sends
    that platform's own script by its own method (never an nft script to a FortiGate), and a
    deletion of its rules by hand is one drift naming where its rules live."""
    rules = registry.platform(platform).rules
    assert rules is not None
    assert reapply_lines(platform, FIREWALL) == [
        (rules.method, rules.script(FIREWALL).splitlines())
    ]
    [gone] = detect("fw", FIREWALL, Readback(rules=None, table_read=True), platform)
    assert (gone.kind, gone.subject, gone.fixable) == ("table_missing", rules.home, True)
    assert gone.detail.startswith(f"{rules.home} is missing")
    seen = Readback(rules=tuple(sorted(rules.comments(FIREWALL))), table_read=True)
    assert detect("fw", FIREWALL, seen, platform) == []


def test_a_fortigate_policy_deleted_by_hand_is_named() -> None:
    """One of Cordon's FortiGate policies deleted by hand is a rule_missing drift naming it."""
    want = sorted(registry.platform("fortigate").rules.comments(FIREWALL))  # type: ignore[union-attr]
    seen = Readback(rules=tuple(want[1:]), table_read=True)
    [d] = detect("fw", FIREWALL, seen, "fortigate")
    assert (d.kind, d.subject, d.fixable) == ("rule_missing", want[0], True)
    assert d.detail == f"rule {want[0]!r} missing from the FortiGate's cordon- policies"


# -- the poller's bookkeeping, with fake devices (no twin) ------------------------------------


class World:
    """What the fake devices show: each interface's admin state, `table inet cordon`'s
    comments (None: absent), devices that do not answer, devices that hang until released."""

    def __init__(self, inv: Inventory) -> None:
        self.inv = inv
        self.admin: dict[tuple[str, str], bool] = {}
        self.index: dict[str, dict[str, int]] = {}
        for _, dev in inv.devices():
            self.index[dev.name] = {i.name: n for n, i in enumerate(dev.interfaces, start=1)}
            for i in dev.interfaces:
                self.admin[dev.name, i.name] = True
        self.tables: dict[str, tuple[str, ...] | None] = {}
        self.silent: set[str] = set()
        self.hang: dict[str, threading.Event] = {}
        self.walks: Counter[str] = Counter()
        self.reads: Counter[str] = Counter()


class FakeDriver:
    """A pooled session to a fake device: the SNMP reads (get, walk) and the nft read
    (rule_comments) the poller uses; everything else refuses."""

    def __init__(self, world: World, target: Target, via: Via) -> None:
        self.world, self.target, self.via = world, target, via
        self._open = False

    @property
    def name(self) -> str:
        return self.target.name

    def _gate(self) -> None:
        self.world.reads[self.name] += 1
        gate = self.world.hang.get(self.name)
        if gate is not None:
            gate.wait(30)
        if self.name in self.world.silent:
            self._open = False
            raise DeviceTimeout(self.name, "read", "no answer (fake)")

    def connect(self) -> None:
        if self.name in self.world.silent:
            raise ConnectError(self.name, "connect", "no route to host (fake)")
        self._open = True

    def close(self) -> None:
        self._open = False

    def is_open(self) -> bool:
        return self._open

    def ping(self) -> None:
        self._gate()

    def facts(self) -> Facts:
        raise NotImplementedError

    def backup(self) -> Backup:
        raise NotImplementedError

    def apply(self, changes: ChangeSet) -> ApplyResult:
        raise NotImplementedError

    def verify(
        self, expect: Expectation, *, timeout: float | None = None, action: str = "verify"
    ) -> Facts:
        raise NotImplementedError

    def rule_comments(self, operation: str = "read") -> tuple[str, ...] | None:
        self._gate()
        return self.world.tables.get(self.name)

    def walk(self, columns: Sequence[str], operation: str = "walk") -> dict[str, dict[int, Any]]:
        self._gate()
        self.world.walks[self.name] += 1
        names = {i: n for n, i in self.world.index[self.name].items()}
        return {c: dict(names) if c in (IF_NAME, IF_DESCR) else {} for c in columns}

    def get(self, oids: Sequence[str]) -> dict[str, Any]:
        self._gate()
        names = {i: n for n, i in self.world.index[self.name].items()}
        out: dict[str, Any] = {}
        for oid in oids:
            col, _, idx = oid.rpartition(".")
            name = names.get(int(idx))
            if name is None:
                raise SnmpError(self.name, "get", f"noSuchInstance {oid} (fake)")
            if col in (IF_ADMIN, IF_OPER):
                out[oid] = 1 if self.world.admin[self.name, name] else 2
            else:
                out[oid] = name
        return out


@pytest.fixture
def inv() -> Inventory:
    return load_inventory(EXAMPLE)


@pytest.fixture
def trail(tmp_path: Path) -> Iterator[Path]:
    """The audit trail in a fresh directory for the test, closed after."""
    log_dir = tmp_path / "logs"
    audit.configure(log_dir, console=False, seal_interval=0)
    yield log_dir
    audit.close()


def events(log_dir: Path, name: str) -> list[dict[str, Any]]:
    out = []
    for path in sorted(log_dir.glob("audit-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if rec["event"] == name:
                out.append(rec)
    return out


class Rig:
    """A poller over fake devices, with the recorded states and run locks a test sets."""

    def __init__(self, inv: Inventory, where: Path | str, **kw: Any) -> None:
        self.where = where  # the health store's file or database
        self.world = World(inv)
        self.states: dict[str, DeviceState] = {}
        self.locked: set[str] = set()
        self.asked: list[str] = []
        self.answer = True
        self.store = HealthStore(where)
        self.pool = Pool(
            inv,
            keepalive=None,
            max_size=128,
            factory=lambda t, _to, v: FakeDriver(self.world, t, v),
        )
        self.poller = Poller(
            inv,
            self.pool,
            lambda: dict(self.states),
            self.store,
            self.reapply,
            locked=lambda: self.locked,
            **kw,
        )

    def reapply(self, device: str) -> bool:
        self.asked.append(device)
        return self.answer

    def close(self) -> None:
        for gate in self.world.hang.values():
            gate.set()
        self.poller.close()
        self.pool.close()
        self.store.close()


@pytest.fixture
def rig(inv: Inventory, state_where: Callable[[str], Path | str], trail: Path) -> Iterator[Rig]:
    """The rig with its health store on each backend in turn (SQLite, PostgreSQL)."""
    r = Rig(inv, state_where("health"), device_timeout=5.0)
    yield r
    r.close()


def device(report: PollReport, name: str) -> DevicePoll:
    [found] = [d for d in report.devices if d.device == name]
    return found


def test_alarm_opened_once_cleared_and_kept_across_restart(rig: Rig, trail: Path) -> None:
    rig.states["nts-sw1"] = SWITCH
    rig.world.admin["nts-sw1", "gi3"] = rig.world.admin["nts-sw1", "gi4"] = False
    rig.poller.reapply = None
    first = rig.poller.poll_once()
    # ten firewalls and nine IOS-XE / AOS-CX switches (Cordon's rules to check on each), and
    # the IOS switch with a record; not the core's IOS switch
    assert first.counts() == {"ok": 20, "drift": 0, "unreachable": 0, "error": 0}
    assert "nts-sw1" in {d.device for d in first.devices}
    assert "rns-sw2" in {d.device for d in first.devices}  # IOS-XE: its CORDON- ACLs read
    assert first.skipped == ["core-sw1"]  # a normal IOS switch: nothing to read
    rig.world.admin["nts-sw1", "gi3"] = True  # someone re-enabled it
    second = rig.poller.poll_once()
    want = "interface gi3 is up, the recorded isolation has it shut (by cli)"
    assert [(d.device, d.kind, d.detail) for d in second.opened] == [
        ("nts-sw1", "interface_up", want)
    ]
    assert device(second, "nts-sw1").status == "drift"
    rig.poller.poll_once()  # still there: not audited again
    [alarm] = events(trail, "drift.alarm")
    assert (alarm["device"], alarm["site"], alarm["detail"]) == (
        "nts-sw1",
        "nantes-jules-verne",
        want,
    )
    # the daemon restarts: the open alarm is still there
    rig.store.close()
    rig.store = rig.poller.store = HealthStore(rig.where)
    [kept] = rig.store.open_alarms()
    assert (kept.device, kept.kind, kept.subject, kept.detail) == (
        "nts-sw1",
        "interface_up",
        "gi3",
        want,
    )
    assert kept.last_seen > kept.first_seen
    rig.world.admin["nts-sw1", "gi3"] = False  # shut again by hand
    fourth = rig.poller.poll_once()
    assert [a.id for a in fourth.cleared] == [kept.id]
    assert rig.store.open_alarms() == []
    [cleared] = events(trail, "drift.cleared")
    assert (cleared["device"], cleared["outcome"], cleared["alarm_id"]) == (
        "nts-sw1",
        "cleared",
        kept.id,
    )
    assert rig.store.last_polls()["nts-sw1"].status == "ok"
    assert audit.verify(trail).ok


def test_normal_site_leftovers_show(rig: Rig) -> None:
    rig.world.tables["fnt-fw1"] = own_comments(rig.world.inv, "fnt-fw1", FIREWALL)
    rig.world.admin["bz1-fw1", "vnd0"] = False
    report = rig.poller.poll_once()
    assert {(d.device, d.kind) for d in report.opened} == {
        ("fnt-fw1", "table_unexpected"),
        ("bz1-fw1", "interface_down"),
    }
    assert rig.asked == []  # a normal record is never "re-applied": that would reopen


def test_unreachable_is_not_drift_and_keeps_alarms_open(rig: Rig, trail: Path) -> None:
    rig.states["nts-fw1"] = FIREWALL  # recorded, but the table is not there: drift
    rig.poller.reapply = None
    assert [d.kind for d in rig.poller.poll_once().opened] == ["table_missing"]
    rig.world.silent.add("nts-fw1")
    report = rig.poller.poll_once()
    polled = device(report, "nts-fw1")
    assert (polled.status, polled.drifts) == ("unreachable", ())
    assert polled.error is not None and "fake" in polled.error
    assert report.cleared == [] and report.opened == []
    assert [a.kind for a in rig.store.open_alarms("nts-fw1")] == ["table_missing"]
    assert rig.store.last_polls()["nts-fw1"].status == "unreachable"
    assert len(events(trail, "drift.alarm")) == 1


def test_a_hung_device_is_given_up_on_not_waited_for(
    inv: Inventory, tmp_path: Path, trail: Path
) -> None:
    rig = Rig(inv, tmp_path / "health.sqlite", device_timeout=0.3, workers=4)
    try:
        rig.states["nts-fw1"] = FIREWALL
        rig.world.tables["nts-fw1"] = own_comments(inv, "nts-fw1", FIREWALL)
        rig.poller.poll_once()  # sessions open
        assert rig.store.open_alarms() == []  # as recorded: no drift
        rig.world.hang["nts-fw1"] = threading.Event()
        report = rig.poller.poll_once()
        hung = device(report, "nts-fw1")
        assert (hung.status, hung.error) == ("unreachable", "no answer within 0.3 s")
        assert report.counts()["ok"] == 18  # every other device was read
        again = device(rig.poller.poll_once(), "nts-fw1")
        assert again.error == "an earlier read is still running (no answer)"
        assert rig.store.open_alarms() == []
    finally:
        rig.close()


def test_reapply_asked_for_repairable_drift_only_and_never_over_a_run(
    rig: Rig, trail: Path
) -> None:
    rig.states["nts-fw1"] = FIREWALL
    rig.states["nts-sw1"] = DeviceState().shut("gi99", "cli")  # no such port: not repairable
    report = rig.poller.poll_once()
    assert {(d.device, d.kind) for d in report.opened} == {
        ("nts-fw1", "table_missing"),
        ("nts-sw1", "interface_missing"),
    }
    assert rig.asked == ["nts-fw1"]
    assert report.reapplied == ["nts-fw1"] and device(report, "nts-fw1").reapplied
    [marked] = rig.store.open_alarms("nts-fw1")
    assert marked.reapplied == 1 and marked.reapplied_at is not None
    assert [e["outcome"] for e in events(trail, "drift.reapplied")] == ["ok"]
    # a run takes the site: its devices are not read, nothing is re-applied over it
    rig.locked.add("nantes-jules-verne")
    busy = rig.poller.poll_once()
    assert {"nts-fw1", "nts-sw1"} <= set(busy.busy)
    assert rig.asked == ["nts-fw1"]
    rig.locked.clear()
    # the daemon's policy says alarm only
    rig.answer = False
    rig.poller.poll_once()
    assert rig.asked == ["nts-fw1", "nts-fw1"]
    assert rig.store.open_alarms("nts-fw1")[0].reapplied == 1
    # the table is back (as the re-application left it): cleared as re-applied
    rig.world.tables["nts-fw1"] = own_comments(rig.world.inv, "nts-fw1", FIREWALL)
    done = rig.poller.poll_once()
    assert [a.kind for a in done.cleared] == ["table_missing"] and done.opened == []
    cleared = [e for e in events(trail, "drift.cleared") if e["device"] == "nts-fw1"]
    assert [(e["outcome"], e["reapplied"]) for e in cleared] == [("reapplied", 1)]


def test_renumbered_interfaces_are_walked_again(rig: Rig) -> None:
    rig.states["nts-sw1"] = SWITCH
    rig.world.admin["nts-sw1", "gi3"] = rig.world.admin["nts-sw1", "gi4"] = False
    assert device(rig.poller.poll_once(), "nts-sw1").status == "ok"
    rig.poller.poll_once()
    assert rig.world.walks["nts-sw1"] == 1  # the second poll used the cached ifIndex
    # the device renumbers: gi3 and gi4 swap indexes, and gi3 is up now
    idx = rig.world.index["nts-sw1"]
    idx["gi3"], idx["gi4"] = idx["gi4"], idx["gi3"]
    rig.world.admin["nts-sw1", "gi3"] = True
    report = rig.poller.poll_once()
    assert [(d.kind, d.subject) for d in device(report, "nts-sw1").drifts] == [
        ("interface_up", "gi3")
    ]
    assert rig.world.walks["nts-sw1"] == 2
