"""Planning is pure and exact: golden plans per platform (the all-Linux group's golden plans
unchanged since the example group moved to a mix of platforms, and the mixed example's own),
refusals of must-survive and management cuts, idempotent re-planning, and clear errors for invalid
playbooks."""

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
from agent.platforms import registry
from agent.platforms.fortigate import render as fg_render
from agent.platforms.linux_nftables import render
from agent.platforms.linux_nftables.render import nft_table
from agent.platforms.stormshield import render as sns_render
from agent.playbook import load as load_playbook
from agent.run.executor import Executor
from agent.run.model import RunOptions
from scripts.synth import hospi_grand_ouest
from tests.conftest import EXAMPLE, ROOT
from tests.pgserver import Where

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load(EXAMPLE)


@pytest.fixture(scope="module")
def linux_inv(tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    """The example group as it was before the mix: every firewall on linux_nftables."""
    path = tmp_path_factory.mktemp("all-linux") / "hospi-grand-ouest-linux.yaml"
    path.write_text(yaml.safe_dump(hospi_grand_ouest(mixed=False), sort_keys=False))
    return load(path)


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


GOLDEN_CASES = [
    ("preventive-degraded", ["saint-gilles-villa-notre-dame"]),
    ("isolate-site", ["rennes-la-sagesse"]),
]


def check_golden(text: str, golden: Path) -> None:
    if os.environ.get("CORDON_REGOLD"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
        pytest.fail(f"{golden} regenerated: review `git diff`, then run without CORDON_REGOLD")
    assert text == golden.read_text()


@pytest.mark.parametrize(("name", "sites"), GOLDEN_CASES)
def test_golden_plans_of_the_all_linux_group(
    linux_inv: Inventory, name: str, sites: list[str]
) -> None:
    """On the all-Linux group (`hospi_grand_ouest(mixed=False)`), the plan (commands, undo,
    impact) equals the golden file reviewed before the example group's platforms were mixed:
    planning for linux_nftables did not change."""
    pb = load_playbook(ROOT / "playbooks" / f"{name}.yaml", linux_inv)
    check_golden(render_plan(plan(pb, linux_inv, sites=sites)), GOLDEN / f"{name}.txt")


@pytest.mark.parametrize(("name", "sites"), GOLDEN_CASES)
def test_golden_plans_of_the_mixed_example(inv: Inventory, name: str, sites: list[str]) -> None:
    """On the shipped example (Saint-Gilles behind a Stormshield SNS, La Sagesse behind a
    FortiGate), the plan equals the reviewed golden file of the mix."""
    pb = load_playbook(ROOT / "playbooks" / f"{name}.yaml", inv)
    text = render_plan(plan(pb, inv, sites=sites))
    methods = {"preventive-degraded": "(stormshield, sns)", "isolate-site": "(fortigate, fortios)"}
    assert methods[name] in text
    check_golden(text, GOLDEN / f"{name}.mixed.txt")


# the guest access port of a switch of each platform of the mix (segment-port: one port shut)
SWITCH_CASES = [
    ("saint-nazaire-estuaire", "stn-sw1", "1/1/18", "aruba_aoscx"),
    ("rennes-la-sagesse", "rns-sw1", "GigabitEthernet1/0/10", "cisco_iosxe"),
    ("nantes-jules-verne", "nts-sw1", "gi16", "cisco_ios"),
    ("bretagne-etab-1", "bz1-sw1", "ge-0/0/16", "juniper_junos"),
]


@pytest.mark.parametrize(("site", "device", "port", "platform"), SWITCH_CASES)
def test_golden_switch_plans_of_the_mixed_example(
    inv: Inventory, site: str, device: str, port: str, platform: str
) -> None:
    """`segment-port` on the guest port of a switch of each platform of the mix: the port
    named as its platform names it, shut in that platform's own syntax, equals the reviewed
    golden file (and the guest flow is the one cut)."""
    found = inv.find_device(device)
    assert found is not None and str(found[1].platform) == platform
    pb = load_playbook(
        ROOT / "playbooks" / "segment-port.yaml", inv, {"device": device, "interface": port}
    )
    text = render_plan(plan(pb, inv, sites=[site]))
    assert f"impact {device[:3]}-guest-internet: cut" in text
    check_golden(text, GOLDEN / f"segment-port.{platform}.mixed.txt")


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
            "name: x\nlevel: L4\nsteps:\n  - {name: a, action: shut_port, device: bz2-fw1, "
            "interface: inet0}\n",
            "bz2-fw1 is linux_nftables: shut a port with method cli on cisco_ios, fortigate",
        ),
        (
            "name: x\nlevel: L4\nsteps:\n  - {name: a, action: shut_port, device: sgv-fw1, "
            "interface: inet0}\n",
            "sgv-fw1 is stormshield: shut a port with method cli on cisco_ios, fortigate",
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


def test_approval_gate_waits_for_a_second_person(
    inv: Inventory, tmp_path: Path, state_where: Where
) -> None:
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
    journal = Journal(state_where("journal"))
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


def test_rolling_back_a_run_that_changed_nothing_cancels_it(
    inv: Inventory, tmp_path: Path, state_where: Where
) -> None:
    """A run waiting for its approval holds its sites; rolling it back cancels it and frees them,
    nothing having been sent."""
    pb = load_playbook(
        playbook_file(
            tmp_path,
            "name: p\nlevel: L1\nsteps:\n  - {name: cut, action: cut_link, kinds: [internet]}\n",
        ),
        inv,
    )
    journal = Journal(state_where("journal"))
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


# Where each platform holds the three kinds of exception: the sites the nft tests always used, on
# the all-Linux group; on the mixed example, one site behind each firewall platform.
EXCEPTION_SITES = {
    "linux_nftables": ("nantes-jules-verne", "nts", "rennes-la-sagesse"),
    "fortigate": ("nantes-jules-verne", "nts", "rennes-la-sagesse"),
    "stormshield": ("fontenay-sud-vendee", "fnt", "fontenay-sud-vendee"),
    "linux_nftables (mixed example)": ("bretagne-etab-2", "bz2", "bretagne-etab-2"),
}


def _exception_plans(
    inv: Inventory, tmp_path: Path, sites: tuple[str, str, str]
) -> dict[str, Plan]:
    """A plan per kind of exception: allow_flow (the WAN cut at `sites[0]` keeping its backup to
    the core), block_zones' must-survive (isolate-site at `sites[2]`), reconnect_zone (its servers
    zone back after that isolation)."""
    allow_site, code, site = sites
    isolate = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", inv)
    isolated = plan(isolate, inv, sites=[site])
    after = {c.device: c.after for s in isolated.steps for c in s.changes}
    allow = load_playbook(
        playbook_file(
            tmp_path,
            "name: keep\nlevel: L2\nsteps:\n"
            "  - {name: cut-wan, action: cut_link, kinds: [wan]}\n"
            f"  - {{name: keep, action: allow_flow, flow: {code}-backup-core}}\n",
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
        "allow_flow": plan(allow, inv, sites=[allow_site]),
        "block_zones": isolated,
        "reconnect_zone": plan(reconnect, inv, sites=[site], current=after),
    }


def _nft_lines(p: Plan) -> list[str]:
    return [ln for s in p.steps for c in s.changes if c.method == "nft" for ln in c.commands]


@pytest.mark.parametrize("kind", ["allow_flow", "block_zones", "reconnect_zone"])
@pytest.mark.parametrize("group", ["linux_nftables", "linux_nftables (mixed example)"])
def test_exception_replies_are_accepted_by_connection_tracking_only(
    inv: Inventory, linux_inv: Inventory, tmp_path: Path, kind: str, group: str
) -> None:
    """Every rendered accept from a service's source port matches replies of a connection the
    client opened (`ct state established,related`) or a connection first seen mid-stream that
    opens nothing (an ACK, no SYN): never a packet opening a connection from the server side.
    (nft rules: on the all-Linux group at La Sagesse and Nantes, and at a Linux site of the
    mixed example.)"""
    on = linux_inv if group == "linux_nftables" else inv
    p = _exception_plans(on, tmp_path, EXCEPTION_SITES[group])[kind]
    lines = _nft_lines(p)
    replies = [ln for ln in lines if " tcp sport " in ln and " accept " in ln]
    requests = [ln for ln in lines if " tcp dport " in ln and " accept " in ln]
    assert replies and requests
    assert all(ln.count("ct state") == 1 for ln in replies), replies
    established = [ln for ln in replies if "ct state established,related counter accept" in ln]
    resumed = [ln for ln in replies if f"{RESUME} counter accept" in ln]
    assert len(established) == len(resumed) == len(replies) // 2
    # a connection opens in the declared direction only: requests carry no state condition
    assert not any("ct state" in ln for ln in requests)


@pytest.mark.parametrize("kind", ["allow_flow", "block_zones", "reconnect_zone"])
@pytest.mark.parametrize("platform", ["fortigate", "stormshield"])
def test_session_platforms_accept_no_reply_direction_at_all(
    inv: Inventory, tmp_path: Path, kind: str, platform: str
) -> None:
    """On FortiGate and Stormshield SNS the session table carries a connection's replies: the
    plan's reply accepts render as nothing. No policy/filter rule of theirs accepts a packet from
    a kept flow's server to its client (that would let the server open a connection backwards),
    and every kept flow's request is accepted (its session opens)."""
    p = _exception_plans(inv, tmp_path, EXCEPTION_SITES[platform])[kind]
    changes = [c for s in p.steps for c in s.changes if c.platform == platform]
    assert changes
    spec = registry.platform(platform)
    assert spec.rules is not None
    kept = 0
    for change in changes:
        replies = [r for r in change.after.rules if r.reply]
        requests = [r for r in change.after.rules if r.verdict == "accept" and not r.reply]
        kept += bool(replies and requests)
        assert change.commands == tuple(spec.rules.script(change.after).splitlines())
        if platform == "fortigate":
            accepts = [x for x in fg_render.policies(change.after) if x.action == "accept"]
            for r in replies:
                back = (r.iif, r.oif, fg_address(r.saddr), fg_address(r.daddr))
                assert not any(
                    (x.srcintf, x.dstintf, x.srcaddr, x.dstaddr) == back for x in accepts
                ), (change.device, r)
            names = {x.name for x in accepts}
            assert {fg_render.PREFIX + fg_render.rule_id(r) for r in requests} <= names
        else:
            rule_lines = [ln for ln in change.commands if ln.startswith(sns_render.INSERT)]
            assert not any(" srcport=" in ln for ln in rule_lines), change.device
            passes = {c for ln in rule_lines if " action=pass " in ln for c in sns_comments(ln)}
            assert {sns_render.comment(r) for r in requests} <= passes
    assert kept, "the plan keeps a flow through a cut on this platform"


def fg_address(addr: str | None) -> str:
    return fg_render.address_name(addr) if addr else "all"


def sns_comments(line: str) -> frozenset[str]:
    return sns_render.comments_in(line)


def test_reconnect_counter_comes_after_the_declared_accepts_and_sees_a_backward_opening(
    linux_inv: Inventory, tmp_path: Path
) -> None:
    """In a reconnected zone, a new connection from a declared server's port toward the core is
    not one of the zone's declared flows: only its counter (ct state new) can match it before the
    zone's accept, since the reply accepts in front of it need an established connection.
    (nft rules: La Sagesse of the all-Linux group, whose servers zone serves a flow from the WAN,
    stn-lab-rns; the twin test checks the counter on every platform of the mixed example.)"""
    p = _exception_plans(linux_inv, tmp_path, EXCEPTION_SITES["linux_nftables"])["reconnect_zone"]
    lines = _nft_lines(p)
    forward = lines[lines.index("  chain forward {") : lines.index("  chain input {")]
    counter = next(i for i, ln in enumerate(forward) if "ct state new counter" in ln)
    ahead = [ln for ln in forward[:counter] if ' iifname "lan0.180" oifname "wan0"' in f" {ln}"]
    assert ahead, "the servers zone's declared replies go ahead of its counter"
    assert any(" tcp sport " in ln for ln in ahead)
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
