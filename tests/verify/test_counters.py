"""Live traffic on the accept rules that keep must-survive flows, without a twin: the judgement on
recorded counter readings (moved both ways: open; silence, one way, no rule, a reload: never a
verdict of closed), the `counters:<device>` source over recorded readings, the nftables read-back
of packets and bytes by rule id, and the poller's traffic alarm over fake devices (opened at the
first poll that sees a flow's rules still, audited and stored with the flow, site and device;
cleared when traffic resumes or the record no longer keeps the flow; a device whose driver cannot
count is never judged)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from agent import audit
from agent.drivers.base import Target, Via
from agent.drivers.pool import Pool
from agent.errors import DeviceTimeout
from agent.inventory import load as load_inventory
from agent.inventory.models import Inventory
from agent.network.state import DeviceState, NftRule
from agent.platforms import registry
from agent.platforms.capabilities import Traffic
from agent.platforms.fortigate import render as fgt_render
from agent.platforms.fortigate import traffic as fgt_traffic
from agent.platforms.fortigate import twin_nft
from agent.platforms.linux_nftables import parse, render, traffic
from agent.service.health import TRAFFIC_STOPPED, HealthStore
from agent.service.poll import Poller
from agent.verify.counters import (
    CounterSource,
    Movement,
    counter_sources,
    flow_rules,
    judge,
)
from agent.verify.evidence import FlowStatus, Seen, combine
from tests.daemon.test_drift import EXAMPLE, FakeDriver, World, events

FIXTURES = Path(__file__).resolve().parents[2] / "agent" / "platforms" / "fortigate" / "fixtures"
FW, SITE = "bz2-fw1", "bretagne-etab-2"
FLOW = "bz2-lab-lis"  # lab analyser (lan0.140) -> LIS (lan0.180), routed by bz2-fw1
OTHER = "bz2-sterilisation-trace"  # lan0.150 -> lan0.180, same firewall
LOCAL = "bz2-icu-monitoring"  # same zone: never routed by the firewall


def t(packets: int, octets: int | None = None) -> Traffic:
    return Traffic(packets, packets * 60 if octets is None else octets)


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load_inventory(EXAMPLE)


@pytest.fixture
def trail(tmp_path: Path) -> Iterator[Path]:
    """The audit trail in a fresh directory for the test, closed after."""
    log_dir = tmp_path / "logs"
    audit.configure(log_dir, console=False, seal_interval=0)
    yield log_dir
    audit.close()


# -- the judgement ------------------------------------------------------------------------------


def test_moved_both_ways_is_open_traffic() -> None:
    j = judge((t(10), t(8)), (t(25), t(20)))
    assert j.movement is Movement.MOVED
    assert (j.packets, j.bytes) == (27, 27 * 60)


def test_silence_one_way_no_rule_and_reload_are_no_verdict_of_open() -> None:
    assert judge((t(10), t(8)), (t(10), t(8))).movement is Movement.STILL
    one = judge((t(10), t(8)), (t(14), t(8)))
    assert one.movement is Movement.ONE_WAY
    assert "1 of its 2" in one.detail
    assert judge((None, None), (None, None)).movement is Movement.UNCOUNTED
    assert judge((t(10), t(8)), (t(3), t(9))).movement is Movement.RESET  # table reloaded
    assert judge((None, None), (t(3), t(9))).movement is Movement.RESET  # rule appeared
    assert judge((t(3), None), (t(9), None)).movement is Movement.MOVED  # a line of its own only
    with pytest.raises(ValueError, match="different rules"):
        judge((t(1),), (t(1), t(2)))


# -- the source ---------------------------------------------------------------------------------


class Recorded:
    """A device answering recorded readings, one per read, for the rules asked."""

    def __init__(self, *readings: Sequence[Traffic | None]) -> None:
        self.readings = list(readings)
        self.asked: list[tuple[NftRule, ...]] = []

    def __call__(self, rules: Sequence[NftRule]) -> list[Traffic | None]:
        self.asked.append(tuple(rules))
        return list(self.readings.pop(0))


def source(inv: Inventory, read: Recorded) -> CounterSource:
    return CounterSource(inv, FW, read, window_s=2.0, sleep=lambda _s: None)


def flows(inv: Inventory, *names: str) -> list:  # type: ignore[type-arg]
    return [f for f in inv.flows if f.name in names]


def test_moving_counters_confirm_open_still_ones_say_unknown(inv: Inventory) -> None:
    read = Recorded([t(100), t(90), t(5), t(5)], [t(130), t(118), t(5), t(5)])
    src = source(inv, read)
    got = src.check(SITE, flows(inv, FLOW, OTHER, LOCAL), {FLOW: True, OTHER: True, LOCAL: True})
    assert src.name == f"counters:{FW}"
    by = {e.flow: e for e in got}
    assert set(by) == {FLOW, OTHER}  # the local flow does not cross the firewall: nothing said
    assert by[FLOW].seen is Seen.OPEN
    assert "58 packets" in by[FLOW].detail
    assert by[OTHER].seen is Seen.UNKNOWN
    assert "no traffic seen on bz2-fw1 in 2 s" in by[OTHER].detail
    assert all(e.seen is not Seen.CLOSED for e in got)
    # both reads asked for the same rules: the flows' request and reply accepts on the firewall
    assert read.asked[0] == read.asked[1]
    assert read.asked[0][:2] == flow_rules(inv, inv.flow(FLOW), FW)  # type: ignore[arg-type]
    results = {r.flow: r.status for r in combine({FLOW: True, OTHER: True}, got)}
    assert results == {FLOW: FlowStatus.PASSED, OTHER: FlowStatus.UNVERIFIED}


def test_a_flow_without_a_counting_rule_or_unread_is_unknown(inv: Inventory) -> None:
    got = source(inv, Recorded([None, None], [None, None])).check(
        SITE, flows(inv, FLOW), {FLOW: True}
    )
    assert [(e.seen, e.detail) for e in got] == [
        (Seen.UNKNOWN, "no counted rule of it on the device (on bz2-fw1 in 2 s)")
    ]

    def unreachable(_rules: Sequence[NftRule]) -> list[Traffic | None]:
        raise DeviceTimeout(FW, "traffic", "no answer")

    src = CounterSource(inv, FW, unreachable, sleep=lambda _s: None)
    (ev,) = src.check(SITE, flows(inv, FLOW), {FLOW: True})
    assert ev.seen is Seen.UNKNOWN
    assert "counters not read on bz2-fw1" in ev.detail


def test_without_a_window_a_check_compares_with_the_previous_reading(inv: Inventory) -> None:
    """What the run's gates use (`window_s=0`): no wait; the first check only reads, a check
    too soon after says so without reading the device (a read it could not use), a later one
    reads and judges the movement since the kept reading."""
    read = Recorded(
        [t(100), t(90), t(5), t(5)],
        [t(130), t(118), t(5), t(5)],
    )
    src = CounterSource(inv, FW, read, window_s=0)
    now = [1000.0]
    src.clock = lambda: now[0]
    ask = (SITE, flows(inv, FLOW, OTHER), {FLOW: True, OTHER: True})
    first = {e.flow: e for e in src.check(*ask)}
    assert {e.seen for e in first.values()} == {Seen.UNKNOWN}
    assert "first reading" in first[FLOW].detail
    now[0] += 0.5
    soon = {e.flow: e for e in src.check(*ask)}
    assert "too soon" in soon[FLOW].detail
    assert {e.seen for e in soon.values()} == {Seen.UNKNOWN}
    assert len(read.asked) == 1  # the device was not read
    now[0] += 11.5
    later = {e.flow: e for e in src.check(*ask)}
    assert later[FLOW].seen is Seen.OPEN
    assert "58 packets" in later[FLOW].detail  # since the first reading, 12 s ago
    assert "in 12 s" in later[FLOW].detail
    assert later[OTHER].seen is Seen.UNKNOWN
    assert len(read.asked) == 2


def test_a_rule_never_read_before_is_read_even_when_the_others_are_recent(
    inv: Inventory,
) -> None:
    """The read is skipped only when every rule asked has a recent reading: a check that adds a
    flow whose rules were never read reads the device (and takes that flow's first reading)."""
    read = Recorded([t(100), t(90)], [t(101), t(91), t(5), t(5)])
    src = CounterSource(inv, FW, read, window_s=0)
    now = [1000.0]
    src.clock = lambda: now[0]
    src.check(SITE, flows(inv, FLOW), {FLOW: True})
    now[0] += 0.5
    got = {e.flow: e for e in src.check(SITE, flows(inv, FLOW, OTHER), {FLOW: True, OTHER: True})}
    assert len(read.asked) == 2
    assert "too soon" in got[FLOW].detail
    assert "first reading" in got[OTHER].detail


def test_counter_sources_name_the_firewalls_that_route_flows(inv: Inventory) -> None:
    with Pool(inv, keepalive=None) as pool:
        names = [s.name for s in counter_sources(inv, pool)]
    assert "counters:bz2-fw1" in names
    assert "counters:nts-fw1" in names  # a FortiGate: asked, it says whether it can count
    assert not any("sw" in n for n in names)  # switches hold no packet rules


# -- the nftables read-back ---------------------------------------------------------------------


def nft_json(rules: list[tuple[str, str, int, int]]) -> str:
    """`nft -j list table inet cordon` as nft prints it: (chain, comment, packets, bytes)."""
    items: list[dict[str, object]] = [
        {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5"}},
        {"table": {"family": "inet", "name": "cordon", "handle": 7}},
    ]
    for handle, (chain, comment, packets, octets) in enumerate(rules, start=2):
        items.append(
            {
                "rule": {
                    "family": "inet",
                    "table": "cordon",
                    "chain": chain,
                    "handle": handle,
                    "comment": comment,
                    "expr": [
                        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "x"}},
                        {"counter": {"packets": packets, "bytes": octets}},
                        {"accept": None},
                    ],
                }
            }
        )
    return json.dumps({"nftables": items})


def test_nft_traffic_by_rule_id_whatever_the_tag(inv: Inventory) -> None:
    fl = inv.flow(FLOW)
    assert fl is not None
    request, reply = flow_rules(inv, fl, FW)
    tagged = [NftRule(**{**r.__dict__, "tag": "some step: allow it"}) for r in (request, reply)]
    text = nft_json(
        [
            ("forward", render.comment(tagged[0], "forward"), 40, 4000),
            ("forward", render.comment(tagged[1], "forward"), 30, 2000),
            ("forward", render.comment(tagged[1], "forward", render.RESUME), 2, 120),
            ("forward", "cut-wan #0badc0de", 7, 700),
        ]
    )
    table = parse.parse_nft_json(text)
    got = traffic.per_rule(table, [request, reply, NftRule("drop", iif="wan9")])
    assert got == [Traffic(40, 4000), Traffic(32, 2120), None]
    assert traffic.per_rule(None, [request]) == [None]  # no table
    with pytest.raises(ValueError, match="packet and byte"):
        traffic.counter_traffic('[{"counter": {"packets": -1, "bytes": 3}}]')
    assert traffic.counter_traffic('[{"accept": null}]') is None


# -- the FortiGate read-back -------------------------------------------------------------------


def test_fortigate_traffic_by_policy_name(inv: Inventory) -> None:
    """FortiOS's policy counters (the recorded monitor answer's shape): the request accept's
    policy carries its sessions' packets and bytes; a reply accept has no policy of its own."""
    fl = inv.flow("nts-lab-lis")
    assert fl is not None
    request, reply = flow_rules(inv, fl, "nts-fw1")
    recorded = json.loads((FIXTURES / "monitor_firewall_policy.json").read_text())["results"]
    policies = [
        {"policyid": 1, "name": f"cordon-{fgt_render.rule_id(request)}"},
        {"policyid": 7, "name": "site-lan-to-wan"},
    ]
    got = fgt_traffic.per_rule(policies, recorded, [request, reply, NftRule("accept", "x", "y")])
    assert got == [Traffic(420, 51234), None, None]
    with pytest.raises(ValueError, match="packets is not a count"):
        fgt_traffic.per_rule(policies, [{"policyid": 1, "packets": "9", "bytes": 1}], [request])


def test_fortigate_twin_counts_both_directions_of_a_policys_sessions() -> None:
    """The twin's filter: an accept policy counts its sessions' packets (requests where it
    matches, replies by the connection's mark); `monitor/firewall/policy` reads them back."""
    addresses = {"all": {"name": "all", "subnet": "0.0.0.0 0.0.0.0"}}
    pol = {"policyid": 4, "name": "p", "action": "accept", "srcaddr": [{"name": "all"}]}
    deny = {"policyid": 5, "name": "d", "action": "deny"}
    rs = twin_nft.ruleset([pol, deny], [], addresses, {})
    assert rs.forward[0].startswith("ct direction reply ct state established,related ct mark 4 ")
    assert 'counter name "traffic4" ct mark set 4 accept' in rs.forward[-3]
    assert "traffic5" not in rs.counters and "traffic4" in rs.counters
    listed = {
        "nftables": [
            {"counter": {"family": "inet", "name": "traffic4", "packets": 12, "bytes": 900}},
            {"counter": {"family": "inet", "name": "policy4", "packets": 2, "bytes": 120}},
        ]
    }
    assert twin_nft.traffic_counts(json.dumps(listed)) == {4: (12, 900)}
    assert twin_nft.hit_counts(json.dumps(listed)) == {4: 2}


# -- the poller's alarm -------------------------------------------------------------------------


class CountingWorld(World):
    def __init__(self, inv: Inventory) -> None:
        super().__init__(inv)
        self.counts: dict[str, dict[NftRule, Traffic]] = {}


class CountingFirewall(FakeDriver):
    """A fake firewall that also counts its rules' traffic (a lookup of what the test set)."""

    world: CountingWorld

    def rule_traffic(self, rules: Sequence[NftRule]) -> list[Traffic | None]:
        self._gate()
        counts = self.world.counts.get(self.name, {})
        return [counts.get(r) for r in rules]


def kept_state(inv: Inventory, *names: str, device: str = FW) -> DeviceState:
    """The lab and sterilisation zones cut from the servers on `device` (a site's firewall, its
    zones on lan0.140, lan0.150 and lan0.180), the named flows kept by rules."""
    rules = [
        NftRule("drop", "lan0.140", "lan0.180", tag="block"),
        NftRule("drop", "lan0.180", "lan0.140", tag="block"),
        NftRule("drop", "lan0.150", "lan0.180", tag="block"),
        NftRule("drop", "lan0.180", "lan0.150", tag="block"),
    ]
    for name in names:
        fl = inv.flow(name)
        assert fl is not None
        rules += [
            NftRule(**{**r.__dict__, "tag": f"must survive: {name}"})
            for r in flow_rules(inv, fl, device)
        ]
    return DeviceState().with_rules(rules)


class AlarmRig:
    def __init__(self, inv: Inventory, tmp: Path, *, counting: bool = True) -> None:
        self.inv = inv
        self.world = CountingWorld(inv)
        self.states: dict[str, DeviceState] = {}
        self.store = HealthStore(tmp / "health.sqlite")
        cls = CountingFirewall if counting else FakeDriver

        def factory(target: Target, _to: object, via: Via) -> FakeDriver:
            return cls(self.world, target, via)

        self.pool = Pool(inv, keepalive=None, max_size=128, factory=factory)
        self.poller = Poller(inv, self.pool, lambda: dict(self.states), self.store)

    def record(self, state: DeviceState) -> None:
        self.states[FW] = state
        how = registry.platform("linux_nftables").rules
        assert how is not None
        self.world.tables[FW] = tuple(sorted(how.comments(state)))

    def count(self, name: str, request: int, reply: int) -> None:
        fl = self.inv.flow(name)
        assert fl is not None
        a, b = flow_rules(self.inv, fl, FW)
        self.world.counts.setdefault(FW, {}).update({a: t(request), b: t(reply)})

    def close(self) -> None:
        self.poller.close()
        self.pool.close()
        self.store.close()


@pytest.fixture
def alarms(inv: Inventory, tmp_path: Path, trail: Path) -> Iterator[AlarmRig]:
    r = AlarmRig(inv, tmp_path)
    yield r
    r.close()


def traffic_alarms(store: HealthStore) -> dict[str, str]:
    return {a.subject: a.detail for a in store.open_alarms() if a.kind == TRAFFIC_STOPPED}


def test_a_stopped_must_survive_flow_alarms_at_the_next_poll_and_clears(
    alarms: AlarmRig, trail: Path
) -> None:
    alarms.record(kept_state(alarms.inv, FLOW, OTHER))
    alarms.count(FLOW, 10, 9)
    alarms.count(OTHER, 50, 40)
    first = alarms.poller.poll_once()  # the first reading: nothing to compare with
    assert first.stopped == [] and traffic_alarms(alarms.store) == {}
    alarms.count(FLOW, 20, 18)
    alarms.count(OTHER, 60, 50)
    assert alarms.poller.poll_once().stopped == []
    alarms.count(OTHER, 70, 60)  # FLOW stops here: its counters stay at 20/18
    report = alarms.poller.poll_once()
    assert report.stopped == [(FW, FLOW)]
    (detail,) = traffic_alarms(alarms.store).values()
    assert f"must-survive flow {FLOW} stopped" in detail
    assert "bz2-fw1 (site bretagne-etab-2)" in detail
    (ev,) = events(trail, "traffic.stopped")
    assert (ev["flow"], ev["device"], ev["site"]) == (FLOW, FW, SITE)
    assert ev["outcome"] == "open"
    assert [d.status for d in report.devices if d.device == FW] == ["ok"]  # not a drift
    # still stopped: the same alarm, audited once
    alarms.count(OTHER, 80, 70)
    assert alarms.poller.poll_once().stopped == []
    assert list(traffic_alarms(alarms.store)) == [FLOW]
    assert len(events(trail, "traffic.stopped")) == 1
    # one way only (requests pass, no reply): still the alarm, not cleared
    alarms.count(FLOW, 25, 18)
    alarms.count(OTHER, 90, 80)
    assert alarms.poller.poll_once().resumed == []
    # traffic again both ways: cleared and audited
    alarms.count(FLOW, 35, 30)
    alarms.count(OTHER, 99, 88)
    assert alarms.poller.poll_once().resumed == [(FW, FLOW)]
    assert traffic_alarms(alarms.store) == {}
    (back,) = events(trail, "traffic.resumed")
    assert (back["flow"], back["outcome"]) == (FLOW, "cleared")
    assert alarms.store.alarms(status="cleared")[0].subject == FLOW


def test_no_verdict_without_a_rule_or_across_a_reload_and_cleared_when_no_longer_kept(
    alarms: AlarmRig, trail: Path
) -> None:
    alarms.record(kept_state(alarms.inv, FLOW))
    alarms.count(FLOW, 10, 9)
    alarms.poller.poll_once()
    assert alarms.poller.poll_once().stopped == [(FW, FLOW)]
    alarms.count(FLOW, 2, 1)  # the table was reloaded: counters restart, no verdict
    assert alarms.poller.poll_once().resumed == []
    assert list(traffic_alarms(alarms.store)) == [FLOW]
    # the record no longer keeps the flow by a rule (a later run): its alarm clears
    alarms.record(kept_state(alarms.inv))
    report = alarms.poller.poll_once()
    assert report.resumed == [(FW, FLOW)]
    (ev,) = events(trail, "traffic.resumed")
    assert "no longer keeps it" in ev["detail"]


def test_a_driver_that_cannot_count_is_never_judged(
    inv: Inventory, tmp_path: Path, trail: Path
) -> None:
    r = AlarmRig(inv, tmp_path, counting=False)
    try:
        r.record(kept_state(inv, FLOW))
        for _ in range(3):
            report = r.poller.poll_once()
            assert report.stopped == []
            assert [d.status for d in report.devices if d.device == FW] == ["ok"]
        assert traffic_alarms(r.store) == {}
    finally:
        r.close()


def test_status_shows_a_stopped_flow_apart_from_drift() -> None:
    from agent.cli.options import Opts  # noqa: PLC0415
    from agent.cli.render.status import render_status  # noqa: PLC0415
    from agent.wire.reports import StatusOut  # noqa: PLC0415

    alarm = {
        "device": FW,
        "site": SITE,
        "kind": TRAFFIC_STOPPED,
        "subject": FLOW,
        "detail": f"{FLOW}: no traffic on {FW}",
        "first_seen": 0.0,
    }
    drift = {**alarm, "kind": "rule_missing", "subject": "x", "detail": "a rule is missing"}
    data = StatusOut.model_validate({"sites": [], "drift_alarms": [alarm, drift]})
    no = None
    opts = Opts(False, True, no, no, Path(), no, no)
    text = render_status(opts, data)
    assert "DRIFT: 1 open alarm(s)" in text
    assert "TRAFFIC STOPPED: 1 must-survive flow(s)" in text
    assert text.index(f"{FLOW}: no traffic") > text.index("TRAFFIC STOPPED")
