"""The impact preview tells the truth: applying a plan's rendered commands to the twin closes
exactly the flows the plan says it cuts (real TCP from every flow's source) and keeps every other
flow open; applying the plan's undo brings back the whole flow matrix. On every platform of the
mixed example: nft scripts and IOS lines as the device's CLI takes them, FortiOS objects and SNS
filter rules through the platform's driver (its API is the only way they reach the device)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.drivers.base import ChangeSet, Target
from agent.engine.plan import DeviceChange, Plan, plan, require_safe
from agent.lab import build, daemons, netns
from agent.platforms import registry
from agent.playbook import load as load_playbook
from tests.conftest import ROOT, Twin, matrix
from tests.lab.twinops import wait_for

pytestmark = pytest.mark.twin


def push(twin: Twin, change: DeviceChange, lines: tuple[str, ...]) -> None:
    """Send rendered commands to the twin device as its CLI would take them."""
    ns = twin.bp.device_ns[change.device]
    if change.method == "nft":
        netns.run(["nft", "-f", "-"], netns=ns, input="\n".join(lines) + "\n")
    elif change.method == "cli" and change.platform == "cisco_ios":
        pathspace = build.frr_pathspace(twin.state.lab, change.device)
        daemons.vtysh(ns, pathspace, "configure terminal", *lines)
    else:
        spec = registry.platform(change.platform)  # its rules, or a vendor switch's ports
        if change.method not in (spec.rules_by, spec.shuts_by):
            raise AssertionError(f"method {change.method} on {change.platform} not exercised here")
        target = Target.of(twin.inv, change.device)
        with registry.one_shot(target, via=registry.via(change.method)) as driver:
            driver.apply(ChangeSet(lines, action="test.plan_twin"))


def apply_and_check(twin: Twin, p: Plan) -> None:
    predicted = {fi.flow: fi.after for fi in p.impact}
    try:
        for change in p.changes:
            push(twin, change, change.commands)
        assert wait_for(lambda: matrix(twin) == predicted, timeout=10), {
            name: (predicted[name], seen)
            for name, seen in matrix(twin).items()
            if predicted[name] != seen
        }
    finally:
        undo_all(twin, p)
    assert wait_for(lambda: all(matrix(twin).values()), timeout=15)


def undo_all(twin: Twin, p: Plan) -> None:
    """Every change's undo, newest first; one failing does not leave the others applied (a
    later test would find the twin cut)."""
    failed: list[str] = []
    for change in reversed(p.changes):
        try:
            push(twin, change, change.undo)
        except Exception as exc:  # reported after the other undos
            failed.append(f"{change.device}: {exc}")
    assert not failed, failed


# The example's firewall platforms each playbook's plan reaches (the test covers each).
EXPECTED_PLATFORMS = {
    ("preventive-degraded", None): {"fortigate", "stormshield", "linux_nftables"},
    ("isolate-site", "rennes-la-sagesse"): {"fortigate"},
    ("isolate-site", "fontenay-sud-vendee"): {"stormshield"},
}


@pytest.mark.parametrize(
    ("playbook", "sites", "cut_at_least"),
    [
        ("preventive-degraded", None, 50),
        ("isolate-site", ["rennes-la-sagesse"], 10),
        ("isolate-site", ["fontenay-sud-vendee"], 9),
    ],
)
def test_plan_impact_matches_the_twin(
    twin: Twin, playbook: str, sites: list[str] | None, cut_at_least: int
) -> None:
    """The flows the plan predicts cut are exactly those the twin shows cut, no more, no less."""
    pb = load_playbook(ROOT / "playbooks" / f"{playbook}.yaml", twin.inv)
    p = require_safe(plan(pb, twin.inv, sites=sites))
    assert sum(fi.change == "cut" for fi in p.impact) >= cut_at_least
    assert all(fi.after for fi in p.impact if fi.must_survive)
    platforms = {c.platform for c in p.changes}
    assert platforms == EXPECTED_PLATFORMS[playbook, sites[0] if sites else None], platforms
    apply_and_check(twin, p)


def test_zone_quarantine_by_cli_matches_the_twin(twin: Twin, tmp_path: Path) -> None:
    """Shutting the admin zone's ports (IOS CLI) cuts the flows the plan predicts, and only them."""
    path = tmp_path / "q.yaml"
    path.write_text(
        "name: quarantine-admin\nlevel: L4\nsteps:\n"
        "  - {name: quarantine, action: shut_zone_ports, zones: [admin]}\n"
    )
    pb = load_playbook(path, twin.inv)
    p = require_safe(plan(pb, twin.inv, sites=["nantes-jules-verne"]))
    cut = {fi.flow for fi in p.impact if fi.change == "cut"}
    assert cut == {"nts-admin-ehr", "nts-admin-files", "nts-admin-internet"}
    assert {c.method for c in p.changes} == {"cli"}
    apply_and_check(twin, p)
