"""Flow verification by the devices' own decisions alone (the twin's prober turned OFF: the run's
only source is `device:<name>`), on the Hospi Grand Ouest twin: preventive-degraded on the 8
sister sites passes verify_flows, the flows the nftables firewalls (their live rulesets evaluated)
and the FortiGates (their own policy lookup) route confirmed by them, the Stormshields' not (their
platform cannot evaluate a flow: unverified); a flow on a path of switch ports only is reported
unverified (never passed); and a must-survive flow cut by hand during a run (a drop rule in
another table of an nftables firewall, beside Cordon's; a deny policy added by REST on a
FortiGate, ahead of the others) is caught and named, with the device that drops it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.drivers.base import Target
from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.lab import netns
from agent.network.paths import flow_path
from agent.platforms.fortigate.driver import FortiGateDriver
from agent.playbook import load as load_playbook
from agent.run.executor import Executor
from agent.verify.decisions import CANNOT, DeviceDecisions
from tests.conftest import ROOT, Twin

pytestmark = pytest.mark.twin

OTHERS = [
    "saint-nazaire-estuaire",
    "nantes-jules-verne",
    "saint-gilles-villa-notre-dame",
    "fontenay-sud-vendee",
    "bretagne-etab-1",
    "bretagne-etab-2",
    "bretagne-etab-3",
    "bretagne-etab-4",
]
SITE, FIREWALL = "bretagne-etab-3", "bz3-fw1"
ROUTED = "bz3-lab-lis"  # must survive, routed by bz3-fw1 (lab zone -> servers zone)
SWITCHED = "bz3-emergency-phone"  # must survive, switch ports only
TABLE = "cdt_hand_cut"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.sqlite")
    yield j
    j.close()


def verdicts(journal: Journal, run_id: str) -> dict[str, dict[str, Any]]:
    """Every flow's verdict recorded by the run's verify steps (the last one per flow)."""
    out: dict[str, dict[str, Any]] = {}
    for g in journal.gates(run_id):
        for r in g.detail.get("flows", []):
            out[r["flow"]] = r
    return out


def test_preventive_degraded_passes_on_device_decisions_alone(twin: Twin, journal: Journal) -> None:
    pb = load_playbook(ROOT / "playbooks" / "preventive-degraded.yaml", twin.inv)
    with Pool(twin.inv, keepalive=None) as pool:
        ex = Executor(
            twin.inv, journal, pool, actor="test", sources=[DeviceDecisions(twin.inv, pool)]
        )
        try:
            run = ex.run(pb, OTHERS)
            seen = verdicts(journal, run.run_id)
        finally:
            for r in journal.runs():
                ex.rollback(r.run_id)
    assert (run.status, run.flow_problems) == ("done", [])
    counts = {s: sum(v["status"] == s for v in seen.values()) for s in ("passed", "unverified")}
    print(f"\nverify_flows on device decisions alone: {counts}, {len(seen)} flows")
    for name, v in sorted(seen.items()):
        print(f"  {name}: {v['status']} {v['evidence']}")
    routed = seen[ROUTED]
    assert routed["status"] == "passed"
    assert routed["confirmed_by"] == [f"device:{FIREWALL}"]
    # the degradation cuts bz3's internet access: its firewall's drop confirms it
    cut = seen["bz3-admin-internet"]
    assert (cut["expected"], cut["status"]) == ("closed", "passed")
    # switch ports only: no device decides, unverified (said, never passed)
    switched = seen[SWITCHED]
    assert switched["status"] == "unverified"
    assert any("switch ports only" in e.get("detail", "") for e in switched["evidence"])
    assert any(SWITCHED in line for line in run.flows_unverified)
    # routed by a FortiGate: its policy lookup confirms it
    fortigate = seen["stn-lab-lis"]
    assert (fortigate["status"], fortigate["confirmed_by"]) == ("passed", ["device:stn-fw1"])
    # a Stormshield cannot answer: unverified unless another device drops the flow first
    cannot = [v for v in seen.values() if any(CANNOT in e.get("detail", "") for e in v["evidence"])]
    assert cannot
    assert all(v["status"] == "unverified" for v in cannot)


@pytest.fixture
def hand_cut(twin: Twin) -> Iterator[tuple[threading.Event, Any]]:
    """A drop of ROUTED in a table of its own in the firewall's namespace (beside Cordon's,
    after it: priority 10), added when `cut()` is called; removed afterwards whatever happens."""
    flow = next(f for f in twin.inv.flows if f.name == ROUTED)
    path = flow_path(twin.inv, flow)
    ns = twin.bp.device_ns[FIREWALL]
    rules = (
        f"table ip {TABLE} {{\n  chain f {{\n    type filter hook forward priority 10;\n"
        f"    ip saddr {path.src} ip daddr {path.dst} tcp dport {path.port} drop\n  }}\n}}\n"
    )
    done = threading.Event()

    def cut() -> None:
        if not done.is_set():
            netns.run(["nft", "-f", "-"], netns=ns, input=rules)
            done.set()

    try:
        yield done, cut
    finally:
        if done.is_set():
            netns.run(["nft", "delete", "table", "ip", TABLE], netns=ns)


def test_a_must_survive_flow_cut_by_hand_during_the_run_is_named(
    twin: Twin, journal: Journal, hand_cut: tuple[threading.Event, Any]
) -> None:
    done, cut = hand_cut
    pb = load_playbook(ROOT / "playbooks" / "preventive-degraded.yaml", twin.inv)

    def progress(msg: str) -> None:
        if "verified" in msg or "applied" in msg:
            cut()  # by hand, while the run is changing the site

    with Pool(twin.inv, keepalive=None) as pool:
        ex = Executor(
            twin.inv,
            journal,
            pool,
            actor="test",
            sources=[DeviceDecisions(twin.inv, pool)],
            progress=progress,
        )
        try:
            run = ex.run(pb, [SITE])
            seen = verdicts(journal, run.run_id)
        finally:
            for r in journal.runs():
                ex.rollback(r.run_id)
    assert done.is_set(), "the run said nothing before its verify step: the cut was never made"
    print(f"\n{ROUTED}: {seen.get(ROUTED)}\nproblems: {run.flow_problems}")
    assert run.status == "failed"
    # (said by each verify step of the playbook after the cut)
    assert {p for p in run.flow_problems if ROUTED in p} == {
        f"flow {ROUTED}: expected open, observed closed (by device:{FIREWALL})"
    }
    assert seen[ROUTED]["status"] == "failed"
    detail = next(e["detail"] for e in seen[ROUTED]["evidence"] if e["seen"] == "closed")
    assert detail.startswith(f"drop by ip {TABLE} f rule handle")


HAND_POLICY = 4242


@pytest.fixture
def hand_deny(twin: Twin) -> Iterator[Any]:
    """`cut()`: a deny policy added by REST on stn-fw1, moved ahead of every other one, for the
    lab zone to the servers zone (stn-lab-lis); deleted afterwards whatever happens."""
    d = FortiGateDriver(Target.of(twin.inv, "stn-fw1"))
    made = threading.Event()

    def cut() -> None:
        if made.is_set():
            return
        first = d._results("cmdb/firewall/policy", "test")[0]
        d._call(
            "POST",
            "cmdb/firewall/policy",
            operation="test",
            body={
                "policyid": HAND_POLICY,
                "name": "by-hand",
                "srcintf": [{"name": "lan0.140"}],
                "dstintf": [{"name": "lan0.180"}],
                "srcaddr": [{"name": "all"}],
                "dstaddr": [{"name": "all"}],
                "service": [{"name": "ALL"}],
                "action": "deny",
                "schedule": "always",
            },
        )
        made.set()
        d._call(
            "PUT",
            f"cmdb/firewall/policy/{HAND_POLICY}",
            operation="test",
            query={"action": "move", "before": str(first["policyid"])},
        )

    try:
        yield cut
    finally:
        if made.is_set():
            d._call("DELETE", f"cmdb/firewall/policy/{HAND_POLICY}", operation="test")
        d.close()


def test_a_fortigate_policy_added_by_hand_is_named(
    twin: Twin, journal: Journal, hand_deny: Any
) -> None:
    pb = load_playbook(ROOT / "playbooks" / "preventive-degraded.yaml", twin.inv)
    said: list[str] = []

    def progress(msg: str) -> None:
        said.append(msg)
        if "verified" in msg:
            hand_deny()

    with Pool(twin.inv, keepalive=None) as pool:
        ex = Executor(
            twin.inv,
            journal,
            pool,
            actor="test",
            sources=[DeviceDecisions(twin.inv, pool)],
            progress=progress,
        )
        try:
            run = ex.run(pb, ["saint-nazaire-estuaire"])
            seen = verdicts(journal, run.run_id)
        finally:
            for r in journal.runs():
                ex.rollback(r.run_id)
    assert run.status == "failed"
    assert (
        "flow stn-lab-lis: expected open, observed closed (by device:stn-fw1)" in run.flow_problems
    )
    detail = next(e["detail"] for e in seen["stn-lab-lis"]["evidence"] if e["seen"] == "closed")
    assert detail == f"policy {HAND_POLICY} (deny)"
