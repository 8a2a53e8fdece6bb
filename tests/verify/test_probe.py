"""Probe points without the twin (#15): the inventory's probe declarations and their checks (file,
path, line, cause), the plan's probe accepts (present for kept flows a probe tests, absent for
cut ones, nothing at all for an inventory without probes), the order validation, the mutual-TLS
channel over a socket pair (no address involved), and how results become evidence."""

from __future__ import annotations

import ipaddress
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.engine.plan import plan, probe_tag
from agent.errors import InventoryError, ProbeConfigError, ProbeError
from agent.inventory import load
from agent.inventory.models import Flow, Inventory
from agent.playbook import load as load_playbook
from agent.probe import channel, client, config, protocol, server
from agent.probe.config import ProbeConfig
from agent.probe.protocol import Attempt, Order, OrderError, Outcome, Result
from agent.verify import probes
from agent.verify.evidence import Seen
from tests.conftest import ROOT
from tests.test_cli import cordon

GROUP = Path(__file__).parent / "data" / "probe-group.yaml"
LEGS = {"198.18.93.50": "icu", "198.18.93.120": "srv"}
ALLOWED = (ipaddress.IPv4Network("198.18.0.0/15"),)


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load(GROUP)


def variant(tmp_path: Path, edit: Any) -> Path:
    """The test group with `edit(doc)` applied, written beside a copy of nothing else."""
    doc = yaml.safe_load(GROUP.read_text())
    edit(doc)
    out = tmp_path / "group.yaml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def probe_of(doc: dict[str, Any]) -> dict[str, Any]:
    site = next(s for s in doc["sites"] if s["name"] == "pl-a")
    probe: dict[str, Any] = site["probes"][0]
    return probe


# --- inventory --------------------------------------------------------------------------------


def test_the_group_declares_its_probe(inv: Inventory) -> None:
    site = inv.site("pl-a")
    assert site is not None
    (probe,) = site.probes
    assert probe.id == "pa-probe"
    assert [str(leg.address) for leg in probe.legs] == list(LEGS)
    assert str(probe.control.address) == "198.19.96.40"
    assert probe.flows == ("icu-hl7", "icu-ehr", "srv-ehr", "icu-web", "srv-web", "srv-files")


BAD = [
    (
        "leg outside its zone",
        lambda d: probe_of(d)["legs"][0].update(address="198.18.93.100"),
        "legs.0.address",
        "outside the zone subnet 198.18.93.0/26",
    ),
    (
        "leg on a host's address",
        lambda d: probe_of(d)["legs"][0].update(address="198.18.93.10"),
        "legs.0.address",
        "already used at sites[1].zones[0].hosts[0].address",
    ),
    (
        "leg in an unknown zone",
        lambda d: probe_of(d)["legs"][1].update(zone="labo"),
        "legs.1.zone",
        "zone 'labo' is not defined in site 'pl-a'",
    ),
    (
        "two legs in one zone",
        lambda d: probe_of(d)["legs"][1].update(zone="icu", address="198.18.93.51"),
        "legs.1.zone",
        "duplicate leg zone 'icu'",
    ),
    (
        "control outside the management network",
        lambda d: probe_of(d)["control"].update(address="198.18.93.51"),
        "control.address",
        "outside the management network",
    ),
    (
        "control on a device's management address",
        lambda d: probe_of(d)["control"].update(address="198.19.96.17"),
        "control.address",
        "is already used at sites[1].devices[0].management.address",
    ),
    (
        "a flow from a zone it has no leg in",
        lambda d: (probe_of(d)["legs"].pop(1), probe_of(d)["flows"].pop(2)),
        "flows.3",
        "probe pa-probe has legs only in pl-a/{icu}",
    ),
    (
        "an undeclared flow",
        lambda d: probe_of(d)["flows"].append("nope"),
        "flows.6",
        "flow 'nope' is not declared",
    ),
    (
        "an id that is a device's name",
        lambda d: probe_of(d).update(id="pa-fw"),
        "id",
        "is the name of the device",
    ),
    (
        "a pin that is not one",
        lambda d: probe_of(d)["control"].update(certificate="abc"),
        "control.certificate",
        "is not a certificate pin",
    ),
    (
        "no daemon identity",
        lambda d: d["group"].pop("probe_identity"),
        "group",
        "group.probe_identity is not",
    ),
    (
        "a key in clear",
        lambda d: d["group"]["probe_identity"].update(key="-----BEGIN"),
        "probe_identity.key",
        "by reference only",
    ),
]


@pytest.mark.parametrize(("case", "edit", "where", "cause"), BAD, ids=[b[0] for b in BAD])
def test_bad_probe_declarations_are_located(
    tmp_path: Path, case: str, edit: Any, where: str, cause: str
) -> None:
    path = variant(tmp_path, edit)
    with pytest.raises(InventoryError) as err:
        load(path)
    text = str(err.value)
    assert cause in text, text
    hit = next(str(i) for i in err.value.issues if cause in str(i))
    assert hit.startswith(f"{path}:"), hit  # file and line
    assert where in hit.replace("[", ".").replace("]", ""), hit


# --- the plan's probe accepts -----------------------------------------------------------------


def test_plan_mirrors_kept_flows_for_the_probe(inv: Inventory) -> None:
    """preventive-degraded at pl-a keeps icu-ehr and srv-ehr through the cut WAN: the same
    accepts are planned from the probe's leg address, tagged probe:<id>:<flow>; the cut flows
    get none; the impact is unchanged (the probe is not a declared flow)."""
    pb = load_playbook(ROOT / "playbooks" / "preventive-degraded.yaml", inv)
    p = plan(pb, inv, sites=["pl-a"])
    assert not p.refusals
    rules = p.final_state["pa-fw"].rules
    tagged = {r.tag: r for r in rules if r.tag.startswith("probe:")}
    assert set(tagged) == {probe_tag("pa-probe", "icu-ehr"), probe_tag("pa-probe", "srv-ehr")}
    for flow, leg in (("icu-ehr", "198.18.93.50"), ("srv-ehr", "198.18.93.120")):
        mine = [r for r in rules if r.tag == probe_tag("pa-probe", flow)]
        real = [r for r in rules if r.tag == f"must survive: {flow}"]
        assert len(mine) == len(real) == 2
        # the same hops, port and server; only the client address differs
        assert {(r.iif, r.oif, r.sport, r.dport, r.reply) for r in mine} == {
            (r.iif, r.oif, r.sport, r.dport, r.reply) for r in real
        }
        assert {r.daddr for r in mine if not r.reply} == {r.daddr for r in real if not r.reply}
        assert {r.saddr for r in mine if not r.reply} == {leg}
        assert {r.daddr for r in mine if r.reply} == {leg}
    # visible in the preview: the rendered commands carry the tag
    text = "\n".join(c for ch in p.changes for c in ch.commands)
    assert "probe:pa-probe:icu-ehr" in text
    assert {fi.flow for fi in p.impact} == {f.name for f in inv.flows}


def test_no_probe_no_extra_rule(inv: Inventory, tmp_path: Path) -> None:
    """The same group without the probe: the plan is the one above minus the probe accepts."""
    bare = load(variant(tmp_path, lambda d: d["sites"][1].pop("probes")))
    pb = load_playbook(ROOT / "playbooks" / "preventive-degraded.yaml", bare)
    with_probe = plan(load_playbook(ROOT / "playbooks" / "preventive-degraded.yaml", inv), inv)
    without = plan(pb, bare)
    for device, state in with_probe.final_state.items():
        kept = {r for r in state.rules if not r.tag.startswith("probe:")}
        assert kept == without.final_state[device].rules
    assert not any(
        r.tag.startswith("probe:") for s in without.final_state.values() for r in s.rules
    )


def test_reconnect_keeps_the_probe_rules_under_its_tag(inv: Inventory) -> None:
    """A reconnection's probe accepts carry the reconnect tag (a re-isolation removes them too)
    and come before its counter (probe traffic is not counted as a suspect connection)."""
    degraded = plan(load_playbook(ROOT / "playbooks" / "preventive-degraded.yaml", inv), inv)
    pb = load_playbook(ROOT / "playbooks" / "reconnect.yaml", inv)
    p = plan(pb, inv, sites=["pl-a"], current=degraded.final_state)
    servers = next(s for s in p.steps if s.step == "servers")
    (change,) = servers.changes
    rules = change.after.ordered_rules()
    probe_rules = [r for r in rules if "probe:pa-probe:" in r.tag and "reconnect" in r.tag]
    assert probe_rules, [r.tag for r in rules]
    first_count = next(i for i, r in enumerate(rules) if r.verdict == "count")
    assert all(rules.index(r) < first_count for r in probe_rules)


# --- orders -----------------------------------------------------------------------------------


def order(**over: Any) -> dict[str, Any]:
    flow = {
        "flow": "icu-hl7",
        "source": "198.18.93.50",
        "destination": "198.18.93.70",
        "port": 2575,
        "timeout_s": 1.0,
    }
    flow.update(over.pop("flow", {}))
    return {"op": "run", "version": 1, "flows": [flow], **over}


def parse(obj: dict[str, Any]) -> protocol.Order:
    return protocol.parse_order(obj, legs=LEGS, allowed=ALLOWED, max_flows=4)


def test_a_valid_order() -> None:
    o = parse(order())
    assert o.attempts == (Attempt("icu-hl7", "198.18.93.50", "198.18.93.70", 2575, 1.0),)


REFUSED = [
    ({"flow": {"source": "198.18.93.10"}}, "not one of this probe's leg addresses"),
    ({"flow": {"destination": "10.1.2.3"}}, "outside the networks this probe may test"),
    ({"flow": {"destination": "127.0.0.1"}}, "not a host this probe may test"),
    ({"flow": {"destination": "198.18.93.50"}}, "not a host this probe may test"),
    ({"flow": {"destination": "224.0.0.1"}}, "not"),
    ({"flow": {"port": 0}}, "not a TCP port"),
    ({"flow": {"port": True}}, "not a TCP port"),
    ({"flow": {"timeout_s": 60}}, "not a number of seconds in [0.05, 10]"),
    ({"flow": {"flow": "Bad;name"}}, "not a flow name"),
    ({"flow": {"flow": "icu-hl7\n"}}, "not a flow name"),
    ({"flow": {"extra": 1}}, "unknown field(s) extra"),
    ({"op": "shell"}, "op 'shell' is not one of"),
    ({"version": 2}, "this probe speaks 1"),
    ({"interval_s": 5}, "only a schedule has a period"),
    ({"flows": [{}] * 5}, "at most 4"),
]


@pytest.mark.parametrize(("over", "cause"), REFUSED, ids=[c for _, c in REFUSED])
def test_orders_are_refused_strictly(over: dict[str, Any], cause: str) -> None:
    with pytest.raises(OrderError) as err:
        parse(order(**over))
    assert cause in str(err.value)


def test_a_flow_named_twice_and_a_schedule_out_of_bounds_are_refused() -> None:
    twice = order()
    twice["flows"] = twice["flows"] * 2
    with pytest.raises(OrderError, match="named more than once"):
        parse(twice)
    with pytest.raises(OrderError, match="interval_s"):
        parse(order(op="schedule", interval_s=1))
    assert parse(order(op="schedule", interval_s=30)).interval_s == 30.0


# --- the channel (a socket pair: no address) ---------------------------------------------------


@pytest.fixture
def ids(tmp_path: Path) -> dict[str, Path]:
    for name in ("probe", "daemon", "other"):
        channel.new_identity(tmp_path / f"{name}.pem", tmp_path / f"{name}.key", name)
    return {n: tmp_path / n for n in ("probe", "daemon", "other")}


def exchange(ids: dict[str, Path], who: str, pin: str, o: Order) -> tuple[dict[str, Any], str]:
    """One order from `who`'s identity to a probe pinned to the daemon's, over a socket pair;
    returns the answer (or raises ProbeError) and what the probe logged."""
    cfg = ProbeConfig(
        "pa-probe",
        "198.19.96.40",
        8443,
        ids["probe"].with_suffix(".pem"),
        ids["probe"].with_suffix(".key"),
        ids["daemon"].with_suffix(".pem"),
        dict(LEGS),
        ALLOWED,
        4,
        10,
        None,
    )
    probe = server.Probe(cfg)
    sctx = channel.server_context(cfg.certificate, cfg.key, cfg.daemon_certificate)
    ours, theirs = socket.socketpair()
    logged: list[str] = []
    orig = server._log
    server._log = logged.append  # type: ignore[assignment]
    t = threading.Thread(target=server._serve_one, args=(probe, sctx, theirs, "pair"))
    t.start()
    try:
        ctx = channel.client_context(ids[who].with_suffix(".pem"), ids[who].with_suffix(".key"))
        target = client.ProbeAddress("pa-probe", "198.19.96.40", 8443, pin)
        return client.ask(target, o, ctx, timeout=10, connect=lambda _a, _t: ours), "\n".join(
            logged
        )
    finally:
        ours.close()  # the client may give up before the handshake: the probe sees EOF
        t.join()
        server._log = orig


def test_the_pinned_daemon_is_answered(ids: dict[str, Path]) -> None:
    pin = channel.certificate_pin(ids["probe"].with_suffix(".pem"))
    answer, _ = exchange(ids, "daemon", pin, Order("hello"))
    assert answer["legs"] == LEGS and answer["probe"] == "pa-probe"


def test_another_client_key_is_refused(ids: dict[str, Path]) -> None:
    pin = channel.certificate_pin(ids["probe"].with_suffix(".pem"))
    with pytest.raises(ProbeError, match=r"TLS failed|closed the channel"):
        exchange(ids, "other", pin, Order("hello"))


def test_a_probe_not_matching_its_pin_gets_nothing(ids: dict[str, Path]) -> None:
    wrong = channel.certificate_pin(ids["other"].with_suffix(".pem"))
    with pytest.raises(ProbeError, match="not the pinned"):
        exchange(ids, "daemon", wrong, Order("hello"))
    with pytest.raises(ProbeError, match="no pinned certificate"):
        exchange(ids, "daemon", None, Order("hello"))  # type: ignore[arg-type]


def test_an_authenticated_bad_order_is_refused(ids: dict[str, Path]) -> None:
    pin = channel.certificate_pin(ids["probe"].with_suffix(".pem"))
    bad = Order("run", (Attempt("x", "198.18.93.10", "198.18.93.70", 2575, 1.0),))
    with pytest.raises(ProbeError, match=r"order refused: flows\[0\]\.source"):
        exchange(ids, "daemon", pin, bad)


def test_probe_config_errors_are_located(tmp_path: Path, ids: dict[str, Path]) -> None:
    cfg = tmp_path / "probe.yaml"
    cfg.write_text(
        "id: pa-probe\nlisten: {address: 198.19.96.40}\ncertificate: probe.pem\n"
        "key: probe.key\ndaemon_certificate: daemon.pem\n"
        "legs: [{zone: icu, address: 10.0.0.1}]\nallowed: [198.18.0.0/15]\n"
    )
    with pytest.raises(ProbeConfigError) as err:
        config.load(cfg)
    assert f"{cfg}:4: key" in str(err.value)
    cfg.write_text(cfg.read_text().replace("key: probe.key", "key: file:probe.key"))
    with pytest.raises(ProbeConfigError) as err:
        config.load(cfg)
    assert f"{cfg}:6: legs[0].address" in str(err.value) or "legs" in str(err.value)
    assert "outside every allowed network" in str(err.value)


# --- results -> evidence ----------------------------------------------------------------------


def result(flow: str, source: str, outcome: Outcome, dst: str, port: int) -> Result:
    return Result(flow, source, dst, port, outcome, 1.5, "2026-12-07T00:00:00Z", "")


def test_results_become_evidence(inv: Inventory) -> None:
    src = probes.ProbeSource(inv, "pl-a", inv.site("pl-a").probes[0])  # type: ignore[union-attr]
    todo = src.attempts("pl-a", list(inv.flows))
    assert [a.flow for _, a in todo] == [
        "icu-hl7", "icu-ehr", "srv-ehr", "icu-web", "srv-web", "srv-files"
    ]  # fmt: skip
    by = {a.flow: a for _, a in todo}
    assert by["icu-hl7"].source == "198.18.93.50" and by["srv-ehr"].source == "198.18.93.120"
    outcomes = {
        "icu-hl7": Outcome.CONNECTED,
        "icu-ehr": Outcome.ERROR,
        "srv-ehr": Outcome.TIMEOUT,  # the only srv flow: nothing connected from that leg
        "icu-web": Outcome.REFUSED,
        "srv-web": Outcome.TIMEOUT,
        "srv-files": Outcome.TIMEOUT,
    }
    results = {
        f: result(f, by[f].source, o, by[f].destination, by[f].port) for f, o in outcomes.items()
    }
    expected = {"icu-hl7": True, "icu-ehr": True, "srv-ehr": True, "icu-web": False,
                "srv-web": False, "srv-files": False}  # fmt: skip
    ev = {e.flow: e for e in probes.evidence_from(src.name, inv, todo, results, expected)}
    assert ev["icu-hl7"].seen is Seen.OPEN
    assert ev["icu-ehr"].seen is Seen.UNKNOWN  # the probe could not try
    assert ev["icu-web"].seen is Seen.CLOSED  # its leg connected icu-hl7: a real refusal
    assert ev["srv-ehr"].seen is Seen.CLOSED  # expected open: a contradiction stays one
    assert ev["srv-web"].seen is Seen.UNKNOWN  # a dead leg would look like this: no proof
    assert "leg may be down" in ev["srv-web"].detail
    for e in ev.values():
        assert e.source == "probe:pa-probe"
        assert "not the flow's source host" in e.detail
    assert "198.18.93.10" in ev["icu-hl7"].detail  # the real source host is named


def test_an_unreachable_probe_is_unknown_naming_why(inv: Inventory, tmp_path: Path) -> None:
    def refuse(_addr: tuple[str, int], _t: float) -> socket.socket:
        raise ConnectionRefusedError(111, "Connection refused")

    site = inv.site("pl-a")
    assert site is not None
    pinned = site.probes[0].model_copy(
        update={
            "control": site.probes[0].control.model_copy(
                update={"certificate": "sha256:" + "1" * 64}
            )
        }
    )
    key = tmp_path / "daemon.key"
    channel.new_identity(tmp_path / "daemon.pem", key, "daemon")
    ident = inv.group.probe_identity
    assert ident is not None
    group = inv.group.model_copy(
        update={
            "probe_identity": ident.model_copy(
                update={"certificate": str(tmp_path / "daemon.pem"), "key": f"file:{key}"}
            )
        }
    )
    local = inv.model_copy(update={"group": group})
    src = probes.ProbeSource(local, "pl-a", pinned, connect=refuse)
    ev = src.check("pl-a", list(inv.flows), {f.name: True for f in inv.flows})
    assert len(ev) == 6 and {e.seen for e in ev} == {Seen.UNKNOWN}
    assert all("is unreachable: Connection refused" in e.detail for e in ev)
    # asked about a flow it does not test (from the core): nothing said, nothing tried
    other = Flow.model_validate(
        {"name": "dc-web", "from": "pl-dc/apps/ehr", "to": "internet/public/web:https"}
    )
    assert src.check("pl-a", [other], {"dc-web": False}) == []


def test_cordon_probe_keygen(tmp_path: Path) -> None:
    """`cordon probe keygen` writes a 0600 identity, prints its pin, never overwrites."""
    cert, key = tmp_path / "p.pem", tmp_path / "p.key"
    out = cordon("probe", "keygen", str(cert), str(key), "--name", "pa-probe")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == channel.certificate_pin(cert)
    assert key.stat().st_mode & 0o777 == 0o600
    again = cordon("probe", "keygen", str(cert), str(key), "--name", "x")
    assert again.returncode == 22
    assert "already exists; not overwritten" in again.stderr


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_flow = st.fixed_dictionaries(
    {},
    optional={
        "flow": st.sampled_from(["icu-hl7", "x", "", "A;b"]) | _json,
        "source": st.sampled_from([*LEGS, "198.18.93.10", "::1", "not-an-ip"]) | _json,
        "destination": st.sampled_from(["198.18.93.70", "127.0.0.1", "10.0.0.1"]) | _json,
        "port": st.integers(-5, 70000) | _json,
        "timeout_s": st.floats(allow_nan=True) | _json,
        "extra": _json,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "op": st.sampled_from([*protocol.OPS, "shell"]) | _json,
            "version": st.sampled_from([1, 2]) | _json,
            "flows": st.lists(_flow, max_size=6) | _json,
            "interval_s": st.floats(allow_nan=True) | _json,
        },
    )
)
def test_any_order_is_parsed_or_refused_never_crashes(obj: dict[str, Any]) -> None:
    """Whatever an authenticated client sends, the probe answers an order or a refusal; a
    parsed run only ever names its own legs as sources and allowed hosts as destinations."""
    try:
        o = parse(obj)
    except OrderError:
        return
    for a in o.attempts:
        assert a.source in LEGS
        assert any(ipaddress.IPv4Address(a.destination) in n for n in ALLOWED)
        assert 1 <= a.port <= 65535 and 0.05 <= a.timeout_s <= 10
    assert len(o.attempts) <= 4
