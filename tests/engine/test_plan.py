"""Planning is pure and exact: golden plans per platform, refusals of must-survive and
management cuts, idempotent re-planning, and clear errors for invalid playbooks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from agent.engine import drift
from agent.engine.journal import Journal, state_from_json
from agent.engine.plan import Plan, plan, require_safe
from agent.errors import ApprovalError, PlanError, PlaybookError
from agent.inventory import load
from agent.inventory.models import Inventory
from agent.network.paths import flow_path
from agent.network.state import DeviceState, NftRule, allow_rules, flow_open
from agent.platforms.linux_nftables import render
from agent.platforms.linux_nftables.render import nft_table
from agent.playbook import load as load_playbook
from agent.run.executor import Executor
from agent.run.model import RunOptions
from scripts.synth import hospi_grand_ouest
from tests.conftest import EXAMPLE, ROOT

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load(EXAMPLE)


def playbook_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pb.yaml"
    path.write_text(text)
    return path


def render_plan(p: Plan) -> str:
    lines = [f"playbook {p.playbook} level {p.level} sites {', '.join(p.sites)}"]
    for step in p.steps:
        for c in step.changes:
            lines.append(f"== {step.site} / {step.step} / {c.device} ({c.platform}, {c.method})")
            lines += [f"   {line}" for line in c.commands]
            lines.append("   -- undo --")
            lines += [f"   {line}" for line in c.undo]
    lines += [f"impact {fi.flow}: {fi.change}" for fi in p.impact if fi.change != "stays open"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("name", "sites"),
    [
        ("preventive-degraded", ["saint-gilles-villa-notre-dame"]),
        ("isolate-site", ["rennes-la-sagesse"]),
    ],
)
def test_golden_plans(inv: Inventory, name: str, sites: list[str]) -> None:
    """The plan (commands, undo, impact) equals the reviewed golden file for that playbook."""
    pb = load_playbook(ROOT / "playbooks" / f"{name}.yaml", inv)
    text = render_plan(plan(pb, inv, sites=sites))
    golden = GOLDEN / f"{name}.txt"
    if os.environ.get("CORDON_REGOLD"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
        pytest.fail(f"{golden} regenerated: review `git diff`, then run without CORDON_REGOLD")
    assert text == golden.read_text()


def test_ios_golden(inv: Inventory, tmp_path: Path) -> None:
    """A zone quarantine on a cisco_ios switch renders interface shutdowns and their undo."""
    pb = load_playbook(
        playbook_file(
            tmp_path,
            (
                "name: q\nlevel: L4\nsteps:\n"
                "  - {name: q, action: shut_zone_ports, zones: [admin, guest]}\n"
            ),
        ),
        inv,
    )
    p = plan(pb, inv, sites=["nantes-jules-verne"])
    (change,) = p.changes
    site = inv.site("nantes-jules-verne")
    assert site is not None
    ports = sorted(
        str(port.interface) for z in site.zones if z.name in ("admin", "guest") for port in z.ports
    )
    assert len(ports) == 2
    assert change.device == "nts-sw1"
    assert change.commands == tuple(x for p in ports for x in (f"interface {p}", "shutdown"))
    assert change.undo == tuple(x for p in ports for x in (f"interface {p}", "no shutdown"))


def test_snmp_method_renders_sets(inv: Inventory, tmp_path: Path) -> None:
    """method snmp renders ifAdminStatus SETs instead of CLI lines."""
    pb = load_playbook(
        playbook_file(
            tmp_path,
            (
                "name: q\nlevel: L4\nsteps:\n"
                "  - {name: q, action: shut_port, device: nts-sw1, interface: gi1, method: snmp}\n"
            ),
        ),
        inv,
    )
    (change,) = plan(pb, inv, sites=["nantes-jules-verne"]).changes
    assert change.method == "snmp"
    assert change.commands == ("ifAdminStatus gi1 down",)
    assert change.undo == ("ifAdminStatus gi1 up",)


def test_replan_on_result_is_empty(inv: Inventory) -> None:
    """Re-planning a site already in the planned state changes nothing (idempotent)."""
    for name in ("preventive-degraded", "isolate-site"):
        pb = load_playbook(ROOT / "playbooks" / f"{name}.yaml", inv)
        first = plan(pb, inv)
        assert not first.empty
        again = plan(pb, inv, current=first.final_state)
        assert again.empty
        assert [fi.after for fi in again.impact] == [fi.after for fi in first.impact]


def test_must_survive_cut_is_refused(inv: Inventory, tmp_path: Path) -> None:
    """Shutting the ICU's ports would cut ICU monitoring: refused, naming the flow."""
    text = (
        "name: dark-icu\nlevel: L4\nsteps:\n"
        "  - {name: dark, action: shut_zone_ports, zones: [icu]}\n"
    )
    pb = load_playbook(playbook_file(tmp_path, text), inv)
    p = plan(pb, inv, sites=["nantes-jules-verne"])
    assert p.refusals == (
        "would cut must-survive flow nts-icu-monitoring (keep it open with an allow_flow "
        "step; name it under allow_cut only if cutting it is intended)",
    )
    with pytest.raises(PlanError, match="nts-icu-monitoring") as refused:
        require_safe(p)
    # issue #11 item 9: the way to keep the flow is offered, not only the way to cut it
    assert refused.value.hint is not None and "allow_flow" in refused.value.hint
    allowed = load_playbook(
        playbook_file(
            tmp_path, text.replace("level: L4\n", "level: L4\nallow_cut: [nts-icu-monitoring]\n")
        ),
        inv,
    )
    assert plan(allowed, inv, sites=["nantes-jules-verne"]).refusals == ()


def test_management_interface_cut_is_refused(inv: Inventory, tmp_path: Path) -> None:
    """A step that would shut a device's management interface is refused."""
    pb = load_playbook(
        playbook_file(
            tmp_path,
            (
                "name: oops\nlevel: L4\nsteps:\n"
                "  - {name: oops, action: shut_port, device: nts-sw1, interface: mgmt0}\n"
            ),
        ),
        inv,
    )
    p = plan(pb, inv, sites=["nantes-jules-verne"])
    assert any("nts-sw1's management interface mgmt0" in r for r in p.refusals)


def test_block_zones_keeps_must_survive_flows(inv: Inventory) -> None:
    """The L3 block cuts admin -> servers but keeps lab -> LIS, by explicit accept rules."""
    pb = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", inv)
    p = plan(pb, inv, sites=["rennes-la-sagesse"])
    impact = {fi.flow: fi.change for fi in p.impact}
    assert impact["rns-admin-ehr"] == "cut"
    assert impact["rns-lab-lis"] == "stays open"
    assert impact["rns-sterilisation-trace"] == "stays open"
    assert impact["nts-admin-ehr"] == "stays open"  # other sites are not touched
    assert any("keeps must-survive flow rns-lab-lis" in n for s in p.steps for n in s.notes)


def test_sites_outside_targets_refused(inv: Inventory) -> None:
    """--sites naming a site the playbook does not target is a plan error."""
    pb = load_playbook(ROOT / "playbooks" / "preventive-degraded.yaml", inv)
    with pytest.raises(PlanError, match="hgo-core"):
        plan(pb, inv, sites=["hgo-core"])


def test_nft_table_empty_state_removes_table() -> None:
    """An empty state renders a script that removes our table and nothing else."""
    assert nft_table(DeviceState()) == "table inet cordon {}\ndelete table inet cordon\n"
    text = nft_table(DeviceState(rules=frozenset({NftRule("drop", iif="inet0")})))
    assert 'iifname "inet0" counter drop' in text
    assert "twin_base" not in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\nlevel: L1\nsteps: []\n", "steps"),
        ("name: x\nlevel: L9\nsteps:\n  - {name: a, action: wait, seconds: 1}\n", "level"),
        ("name: x\nlevel: L1\nsteps:\n  - {name: a, action: explode}\n", "action"),
        (
            "name: x\nlevel: L1\ncolour: red\nsteps:\n  - {name: a, action: wait, seconds: 1}\n",
            "unknown key",
        ),
        (
            "name: x\nlevel: L1\nsteps:\n  - {name: a, action: cut_link, kinds: [satellite]}\n",
            "kinds",
        ),
        (
            "name: x\nlevel: L3\nsteps:\n  - {name: a, action: shut_zone_ports, zones: [morgue]}\n",
            "zone 'morgue' is in no site",
        ),
        (
            "name: x\nlevel: L4\nsteps:\n  - {name: a, action: shut_port, device: nts-fw1, "
            "interface: inet0}\n",
            "method cli on cisco_ios",
        ),
        (
            "name: x\nlevel: L4\nsteps:\n  - {name: a, action: shut_port, device: nts-sw1, "
            "interface: gi99}\n",
            "interface 'gi99' is not defined",
        ),
        (
            "name: x\nlevel: L4\nallow_cut: [nts-admin-ehr]\nsteps:\n  - {name: a, action: wait, "
            "seconds: 1}\n",
            "not must-survive",
        ),
        (
            "name: x\nlevel: L4\nsteps:\n  - {name: a, action: allow_flow, flow: nope}\n",
            "flow 'nope' is not in the inventory",
        ),
        (
            "name: x\nlevel: L4\nsteps:\n  - {name: a, action: wait, seconds: 1}\n"
            "  - {name: a, action: wait, seconds: 2}\n",
            "duplicate step name",
        ),
        (
            "name: x\nlevel: L4\ntargets: {sites: [atlantis]}\nsteps:\n  - {name: a, action: wait, "
            "seconds: 1}\n",
            "site 'atlantis'",
        ),
        (
            "name: x\nlevel: L4\nsteps:\n  - {name: a, action: shut_port, device: nts-sw1, "
            "interface: 'gi1; reload'}\n",
            "not a safe interface name",
        ),
    ],
)
def test_invalid_playbooks(inv: Inventory, tmp_path: Path, text: str, expected: str) -> None:
    """Each kind of invalid playbook is refused with file, path and cause; nothing is planned."""
    path = playbook_file(tmp_path, text)
    with pytest.raises(PlaybookError) as info:
        load_playbook(path, inv)
    message = str(info.value)
    assert str(path) in message
    assert expected in message


def test_approval_gate_waits_for_a_second_person(inv: Inventory, tmp_path: Path) -> None:
    """An approval step holds the run before anything is sent; the run's author cannot pass it;
    the wait is journaled (a restart finds the run open and waiting)."""
    pb = load_playbook(
        playbook_file(
            tmp_path,
            (
                "name: gated\nlevel: L1\nsteps:\n  - {name: ok, action: approval}\n"
                "  - {name: cut, action: cut_link, kinds: [internet]}\n"
            ),
        ),
        inv,
    )
    journal = Journal(tmp_path / "j.sqlite")
    ex = Executor(inv, journal, pool=None, actor="alice")  # type: ignore[arg-type]
    started = ex.start(pb, ["nantes-jules-verne"])
    report = ex.proceed(started.run_id)
    assert report.status == "waiting"
    assert report.waiting is not None
    assert "approval" in report.waiting
    assert report.wake_at is not None
    assert {r.status for r in journal.steps(started.run_id)} == {"pending"}
    with pytest.raises(ApprovalError, match="cannot approve it"):
        ex.approve(started.run_id, "alice")
    assert journal.approval(started.run_id, "ok") is None
    assert ex.approve(started.run_id, "bob") == "ok"
    assert journal.approval(started.run_id, "ok") is not None
    assert journal.run(started.run_id).status == "running"
    journal.close()


def test_transient_must_survive_cut_is_refused(tmp_path: Path) -> None:
    """A must-survive flow cut by one step and reopened by a later one is refused too: it is
    down in between, and for good if the later step fails."""
    doc = hospi_grand_ouest()
    next(f for f in doc["flows"] if f["name"] == "nts-backup-core")["must_survive"] = True
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    inv = load(path)
    text = (
        "name: gap\nlevel: L2\nsteps:\n"
        "  - {name: cut-wan, action: cut_link, kinds: [wan]}\n"
        "  - {name: pause, action: wait, seconds: 600}\n"
        "  - {name: back, action: allow_flow, flow: nts-backup-core}\n"
    )
    pb = load_playbook(playbook_file(tmp_path, text), inv)
    p = plan(pb, inv, sites=["nantes-jules-verne"])
    impact = {fi.flow: fi.after for fi in p.impact}
    assert impact["nts-backup-core"] is True  # open again at the end...
    assert p.refusals == (
        "step cut-wan at nantes-jules-verne would cut must-survive flow "
        "nts-backup-core until a later step reopens it",
    )  # ...but not between


def test_rolling_back_a_run_that_changed_nothing_cancels_it(inv: Inventory, tmp_path: Path) -> None:
    """A run waiting for its approval holds its sites; rolling it back cancels it and frees them,
    nothing having been sent."""
    pb = load_playbook(
        playbook_file(
            tmp_path,
            "name: p\nlevel: L1\nsteps:\n  - {name: cut, action: cut_link, kinds: [internet]}\n",
        ),
        inv,
    )
    journal = Journal(tmp_path / "j.sqlite")
    ex = Executor(inv, journal, pool=None, actor="alice")  # type: ignore[arg-type]
    started = ex.start(pb, ["nantes-jules-verne"], options=RunOptions(needs_approval=True))
    assert journal.locks() == {"nantes-jules-verne": started.run_id}
    assert ex.rollback(started.run_id).status == "cancelled"
    assert journal.run(started.run_id).status == "cancelled"
    assert journal.locks() == {}
    assert {r.status for r in journal.steps(started.run_id)} == {"pending"}
    with pytest.raises(ApprovalError, match="nothing to approve"):
        ex.approve(started.run_id, "bob")
    journal.close()


# -- the accepts that keep a flow open through a cut are stateful in the reply direction ----------

RESUME = "ct state new tcp flags & (syn | ack) == ack"


def _exception_plans(inv: Inventory, tmp_path: Path) -> dict[str, Plan]:
    """A plan per kind of exception: allow_flow, block_zones' must-survive, reconnect_zone."""
    isolate = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", inv)
    isolated = plan(isolate, inv, sites=["rennes-la-sagesse"])
    after = {c.device: c.after for s in isolated.steps for c in s.changes if c.method == "nft"}
    allow = load_playbook(
        playbook_file(
            tmp_path,
            "name: keep\nlevel: L2\nsteps:\n"
            "  - {name: cut-wan, action: cut_link, kinds: [wan]}\n"
            "  - {name: keep, action: allow_flow, flow: nts-backup-core}\n",
        ),
        inv,
    )
    reconnect = load_playbook(
        playbook_file(
            tmp_path,
            "name: back\nlevel: L0\nsteps:\n"
            "  - {name: servers, action: reconnect_zone, zones: {zones: [servers]}}\n",
        ),
        inv,
    )
    return {
        "allow_flow": plan(allow, inv, sites=["nantes-jules-verne"]),
        "block_zones": isolated,
        "reconnect_zone": plan(reconnect, inv, sites=["rennes-la-sagesse"], current=after),
    }


@pytest.mark.parametrize("kind", ["allow_flow", "block_zones", "reconnect_zone"])
def test_exception_replies_are_accepted_by_connection_tracking_only(
    inv: Inventory, tmp_path: Path, kind: str
) -> None:
    """Every rendered accept from a service's source port matches replies of a connection the
    client opened (`ct state established,related`) or a connection first seen mid-stream that
    opens nothing (an ACK, no SYN): never a packet opening a connection from the server side."""
    p = _exception_plans(inv, tmp_path)[kind]
    lines = [ln for s in p.steps for c in s.changes if c.method == "nft" for ln in c.commands]
    replies = [ln for ln in lines if " tcp sport " in ln and " accept " in ln]
    requests = [ln for ln in lines if " tcp dport " in ln and " accept " in ln]
    assert replies and requests
    assert all(ln.count("ct state") == 1 for ln in replies), replies
    established = [ln for ln in replies if "ct state established,related counter accept" in ln]
    resumed = [ln for ln in replies if f"{RESUME} counter accept" in ln]
    assert len(established) == len(resumed) == len(replies) // 2
    # a connection opens in the declared direction only: requests carry no state condition
    assert not any("ct state" in ln for ln in requests)


def test_reconnect_counter_comes_after_the_declared_accepts_and_sees_a_backward_opening(
    inv: Inventory, tmp_path: Path
) -> None:
    """In a reconnected zone, a new connection from a declared server's port toward the core is
    not one of the zone's declared flows: only its counter (ct state new) can match it before the
    zone's accept, since the reply accepts in front of it need an established connection."""
    p = _exception_plans(inv, tmp_path)["reconnect_zone"]
    lines = [ln for s in p.steps for c in s.changes if c.method == "nft" for ln in c.commands]
    forward = lines[lines.index("  chain forward {") : lines.index("  chain input {")]
    counter = next(i for i, ln in enumerate(forward) if "ct state new counter" in ln)
    ahead = [ln for ln in forward[:counter] if ' iifname "lan0.180" oifname "wan0"' in f" {ln}"]
    assert ahead, "the servers zone's declared replies go ahead of its counter"
    for ln in ahead:
        if " tcp sport " in ln:
            assert "ct state established,related" in ln or RESUME in ln, ln


def test_preview_opens_a_flow_through_its_stateful_exception(inv: Inventory) -> None:
    """The preview evaluates a reply accept for replies: the kept flows stay open in the
    impact, the others on the same gateway pair are cut."""
    lis = flow_path(inv, next(f for f in inv.flows if f.name == "rns-lab-lis"))
    cut = DeviceState(
        rules=frozenset(
            {NftRule("drop", "lan0.140", "lan0.180"), NftRule("drop", "lan0.180", "lan0.140")}
        )
    )
    assert not flow_open({"rns-fw1": cut}, lis)
    kept = cut.with_rules(allow_rules(lis, "rns-fw1", "keep"))
    assert flow_open({"rns-fw1": kept}, lis)
    # the reply accept is for replies only: a packet from the service's port opening a
    # connection toward the client falls through to the cut
    assert kept.forward("lan0.180", "lan0.140", lis.dst, lis.src, lis.port, 47101) == "drop"
    assert (
        kept.forward("lan0.180", "lan0.140", lis.dst, lis.src, lis.port, None, reply=True)
        == "accept"
    )


def test_a_stateless_reply_accept_left_on_a_firewall_is_drift(inv: Inventory) -> None:
    """A firewall still holding the stateless reply accepts of an earlier release (their
    comments, from the previous golden plan) does not read back as the recorded isolation."""
    pb = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", inv)
    p = plan(pb, inv, sites=["rennes-la-sagesse"])
    recorded = [c.after for s in p.steps for c in s.changes if c.device == "rns-fw1"][-1]
    old = {
        "must survive: rns-lab-lis #5a500d83",
        "must survive: rns-sterilisation-trace #834b70f3",
    }
    replies = {
        render.comment(r, "forward", v)
        for r in recorded.rules
        if r.reply
        for v in render.variants(r)
    }
    on_device = tuple(sorted(render.nft_comments(recorded) - replies | old))
    found = drift.detect(
        "rns-fw1", recorded, drift.Readback(rules=on_device, table_read=True), "linux_nftables"
    )
    assert {d.subject for d in found if d.kind == "rule_unexpected"} == old
    assert {d.subject for d in found if d.kind == "rule_missing"} == replies


def test_a_reply_accept_recorded_by_an_earlier_release_renders_stateful() -> None:
    """A journal written before this fix holds the reply accept as plain fields (no state
    condition); loaded back (a rollback or a drift re-apply renders it), it is stateful."""
    recorded = (
        '{"down": [], "rules": [{"verdict": "accept", "iif": "lan0.180", "oif": "lan0.140", '
        '"saddr": "198.18.14.11", "daddr": "198.18.10.10", "sport": 5001, "dport": null, '
        '"tag": "must survive: rns-lab-lis"}, {"verdict": "drop", "iif": "lan0.180", '
        '"oif": "lan0.140", "saddr": null, "daddr": null, "sport": null, "dport": null, '
        '"tag": "segment"}]}'
    )
    text = nft_table(state_from_json(recorded))
    reply = [ln for ln in text.splitlines() if "tcp sport 5001" in ln]
    assert len(reply) == 2
    assert "ct state established,related counter accept" in reply[0]
    assert RESUME in reply[1]
