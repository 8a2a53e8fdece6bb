"""juniper_junos without a device: the renderer's filters give the same verdicts as Cordon's rule
list (a two-stage evaluator over the twin's own reading of the rendered configuration), the
read-back names round-trip, names that could inject a statement are refused before anything is
sent, the documented reply shapes parse, and the twin daemon frames NETCONF (RFC 6242) and
answers with the documented error shapes."""

from __future__ import annotations

import itertools
import re
import socket
import threading
from pathlib import Path

import pytest

from agent.drivers.base import ChangeSet
from agent.network.state import DeviceState, NftRule
from agent.platforms import registry
from agent.platforms.juniper_junos import driver, parse, render, twin_device

FIX = Path(render.__file__).with_name("fixtures")
WAN, SOINS, SRV, BUR = "ge-0/0/47", "irb.110", "irb.120", "irb.130"
SCOPE, CENTRALE, PC, WEB = "198.18.91.10", "198.18.92.10", "198.18.93.10", "198.18.95.10"

KEPT = [  # the must-survive flow scope -> centrale:2575 kept through a cut of soins and bureau
    NftRule("accept", SOINS, SRV, SCOPE, CENTRALE, None, 2575, "keep"),
    NftRule("accept", SRV, SOINS, CENTRALE, SCOPE, 2575, None, "keep"),
]
STATE = DeviceState(
    rules=frozenset(
        [
            *KEPT,
            NftRule("drop", iif=WAN, tag="cut"),
            NftRule("drop", oif=WAN, tag="cut"),
            NftRule("drop", BUR, SRV, tag="seg"),
            NftRule("drop", SRV, BUR, tag="seg"),
            NftRule("drop", SOINS, SRV, tag="seg"),
            NftRule("drop", SRV, SOINS, tag="seg"),
            NftRule("count", iif=BUR, oif=WAN, tag="soak"),
        ]
    )
)


def fixture(name: str) -> str:
    return (FIX / name).read_text(encoding="utf-8")


# -- a Junos evaluator of the rendered configuration, as the twin reads it -------------------------


def _term_matches(term: dict[str, list[str]], iif: str, pkt: dict[str, object]) -> bool:
    for cond in term["from"]:
        key, _, value = cond.partition(" ")
        want = {
            "interface": iif,
            "source-address": f"{pkt['src']}/32",
            "destination-address": f"{pkt['dst']}/32",
            "protocol": "tcp",
            "source-port": str(pkt["sport"]),
            "destination-port": str(pkt["dport"]),
        }
        if key == "tcp-established":
            if not pkt["ack"]:
                return False
        elif key == "tcp-initial":
            if pkt["ack"]:
                return False
        elif want[key] != value:
            return False
    return True


def _run_filter(
    terms: list[tuple[str, dict[str, list[str]]]], iif: str, pkt: dict[str, object]
) -> bool:
    for _name, term in terms:
        if _term_matches(term, iif, pkt):
            if "discard" in term["then"]:
                return False
            if "accept" in term["then"]:
                return True
    return False  # the implicit discard


def junos_forwards(config: list[str], iif: str, oif: str, pkt: dict[str, object]) -> bool:
    filters = twin_device.filters(config)
    attached = {}
    for s in config:
        m = re.match(r"^interfaces (\S+) unit (\d+) family inet filter (input|output) (\S+)$", s)
        if m:
            name = m.group(1) if m.group(1) != "irb" else f"irb.{m.group(2)}"
            attached[(name, m.group(3))] = m.group(4)
    for (ifname, direction), stage_if in (((iif, "input"), iif), ((oif, "output"), oif)):
        fname = attached.get((ifname, direction))
        if fname is not None and not _run_filter(filters[fname], iif, pkt):
            return False
        del stage_if
    return True


def test_the_rendered_filters_decide_every_packet_as_cordons_rule_list() -> None:
    """For every ingress/egress pair and every address, port and reply flag the rules name, the
    Junos filters (input stage then output stage, implicit discard) forward exactly the packets
    Cordon's first-match list accepts, for packets on the paths the rules were planned for."""
    config = [ln.removeprefix("set ") for ln in render.filters_script(STATE).splitlines()]
    ifs = [WAN, SOINS, SRV, BUR]
    addrs = [SCOPE, CENTRALE, PC, WEB]
    checked = 0
    for iif, oif in itertools.permutations(ifs, 2):
        for src, dst in itertools.permutations(addrs, 2):
            for sport, dport in ((40000, 2575), (2575, 40000), (40000, 443)):
                for ack in (False, True):
                    pkt = {"src": src, "dst": dst, "sport": sport, "dport": dport, "ack": ack}
                    reply = ack and sport == 2575
                    want = STATE.forward(iif, oif, src, dst, sport, dport, reply=reply) != "drop"
                    if not reply and ack and sport == 2575:
                        continue
                    got = junos_forwards(config, iif, oif, pkt)
                    assert got == want, (iif, oif, pkt)
                    checked += 1
    assert checked > 500


def test_kept_flow_terms_come_first_and_every_filter_ends_with_an_accept() -> None:
    """In every filter the must-survive accepts precede the drops, the reply half matches
    tcp-established, and the last term accepts (Junos would otherwise discard the rest)."""
    config = [ln.removeprefix("set ") for ln in render.filters_script(STATE).splitlines()]
    keep_terms = {render.term_name(r) for r in KEPT}
    both = 0
    for fname, terms in twin_device.filters(config).items():
        names = [n for n, _ in terms]
        assert names[-1] == render.DEFAULT_TERM and terms[-1][1]["then"] == ["accept"], fname
        drops = [i for i, (_, t) in enumerate(terms) if "discard" in t["then"]]
        keeps = [i for i, n in enumerate(names) if n in keep_terms]
        if keeps and drops:
            assert max(keeps) < min(drops), fname
            both += 1
    assert both >= 2  # soins' and serveurs' output filters hold both
    reply = render.term_name(KEPT[1])
    assert f"term {reply} from tcp-established" in render.filters_script(STATE)


def test_readback_names_round_trip_and_counters_are_keyed_as_the_soak_reads_them() -> None:
    """The names read back from the rendered lines are exactly the expected set; the count
    rule's counter is one of them."""
    script = render.filters_script(STATE)
    assert parse.names_in(parse.ours(script)) == render.filter_names(STATE)
    (count,) = [r for r in STATE.rules if r.verdict == "count"]
    assert render.counted_as(count) in render.filter_names(STATE)
    assert render.filters_script(DeviceState()) == ""
    spec = registry.platform("juniper_junos")
    assert spec.rules is not None and spec.rules.method == render.METHOD


def test_deletes_remove_exactly_cordons_objects() -> None:
    """The convergence deletes every CORDON- filter and attachment, never another filter."""
    text = parse.config_text(fixture("get-configuration-set.xml"))
    assert parse.delete_lines(parse.ours(text)) == [
        "delete interfaces irb unit 110 family inet filter output",
        "delete firewall family inet filter CORDON-irb_110-OUT",
    ]
    assert "set firewall family inet filter ADMIN-PROTECT term ssh then accept" in (
        parse.config_lines(text)
    )
    assert not any("CORDON" in ln or ln.endswith(" disable") for ln in parse.config_lines(text))


@pytest.mark.parametrize(
    "name",
    ["ge-0/0/1; delete system", "ge-0/0/1\nset system", 'irb.110"', "ge-0/0/1 {", "Gi1/0/1", ""],
)
def test_a_name_that_could_inject_a_statement_is_refused(name: str) -> None:
    """Interface names reach a command line only when they are plain Junos names."""
    with pytest.raises(ValueError, match="not a Junos interface name"):
        render.disable_lines([name], down=True)
    with pytest.raises(ValueError):
        render.filters_script(DeviceState(rules=frozenset({NftRule("drop", iif=name)})))


@pytest.mark.parametrize(
    "line",
    [
        "set interfaces ge-0/0/1 disable; delete system",
        "set interfaces ge-0/0/1 disable\nset system root-authentication plain-text-password",
        'set firewall family inet filter CORDON-x term t then accept "',
        "set firewall family inet filter OTHER term t then accept",
        "delete firewall",
        "set system services telnet",
    ],
)
def test_the_driver_refuses_any_other_line_before_sending(line: str) -> None:
    """A change set line that is not Cordon's own grammar never reaches the device."""
    with pytest.raises(ValueError):
        driver.kind_of([line])


def test_change_sets_are_told_apart() -> None:
    assert driver.kind_of(render.disable_lines([WAN], down=False)) == "disable"
    assert driver.kind_of(render.filters_script(STATE).splitlines()) == "filters"
    assert driver.kind_of([]) == "filters"  # the empty state: remove every CORDON- object
    with pytest.raises(ValueError, match="mixes"):
        driver.kind_of(
            [*render.disable_lines([WAN], down=True), *render.filters_script(STATE).splitlines()]
        )
    assert ChangeSet(tuple(render.disable_lines([WAN], down=True))).commands == (
        "set interfaces ge-0/0/47 disable",
    )


def test_documented_reply_shapes_parse() -> None:
    """The fixtures' replies give interfaces, Cordon's counters only, errors, the pending
    confirmed commit."""
    ifs = {i.name: i for i in parse.interfaces(fixture("get-interface-information.xml"))}
    assert not ifs[WAN].admin_up and ifs[SOINS].admin_up and not ifs[SRV].admin_up
    assert parse.counters(fixture("get-firewall-filter-information.xml")) == {
        "CORDON-irb_110-OUT/r7c78f32d": 12
    }
    assert parse.rpc_errors(fixture("commit-check-failed.xml"))[0][2] == (
        "Referenced filter 'CORDON-missing-OUT' is not defined"
    )
    assert parse.rpc_errors(fixture("load-warning.xml")) == [
        ("warning", "[edit interfaces ge-0/0/1 disable]", "statement not found")
    ]
    history = fixture("get-commit-information.xml")
    assert parse.pending_confirm(history) == "cordon-deadman-0123456789ab"
    assert parse.pending_confirm(fixture("commit-success.xml")) is None
    with pytest.raises(ValueError, match="DTD"):
        parse.interfaces('<!DOCTYPE x [<!ENTITY a "b">]><x/>')


# -- the twin daemon's NETCONF, on a socket pair (its effects are switched off here) ---------------


class Client:
    def __init__(self, dev: twin_device.Device, sid: int) -> None:
        self.sock, theirs = socket.socketpair()
        self.session = twin_device.Session(dev, theirs, sid)
        threading.Thread(target=self.session.serve, daemon=True).start()
        self.buf = b""
        self.hello = self._read_eom()
        self.sock.sendall(
            b'<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities><capability>'
            b"urn:ietf:params:netconf:base:1.1</capability></capabilities></hello>]]>]]>"
        )

    def _read_eom(self) -> str:
        while b"]]>]]>" not in self.buf:
            self.buf += self.sock.recv(65536)
        msg, _, self.buf = self.buf.partition(b"]]>]]>")
        return msg.decode()

    def rpc(self, body: str) -> str:
        data = f'<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="7">{body}</rpc>'
        raw = data.encode()
        half = len(raw) // 2  # two chunks: the server must join them
        self.sock.sendall(
            b"\n#%d\n" % half + raw[:half] + b"\n#%d\n" % (len(raw) - half) + raw[half:] + b"\n##\n"
        )
        out = b""
        while True:
            m = re.match(rb"\n#(\d+|#)\n", self.buf)
            if not m:
                self.buf += self.sock.recv(65536)
                continue
            if m.group(1) == b"#":
                self.buf = self.buf[m.end() :]
                return out.decode()
            size = int(m.group(1))
            while len(self.buf) < m.end() + size:
                self.buf += self.sock.recv(65536)
            out += self.buf[m.end() : m.end() + size]
            self.buf = self.buf[m.end() + size :]


@pytest.fixture
def device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> twin_device.Device:
    monkeypatch.setattr(twin_device.Device, "activate", lambda self: None)  # no kernel here
    dev = twin_device.Device(tmp_path, {}, 60.0)
    dev.restore(["system host-name t1"])
    return dev


def skeleton(xml: str) -> list[str]:
    """The element names of a reply, in document order (the shape, without values)."""
    return re.findall(r"<([a-z][a-z-]*)[\s/>]", xml.rsplit("?>", maxsplit=1)[-1])


def test_twin_daemon_frames_netconf_and_answers_in_the_documented_shapes(
    device: twin_device.Device,
) -> None:
    """Hello in 1.0 framing, then chunked 1.1; lock held by another session, a syntax error,
    a commit check failure: each reply has the documented shape, and nothing was committed."""
    a, b = Client(device, 1001), Client(device, 1002)
    assert skeleton(a.hello) == skeleton(fixture("hello-server.xml"))
    assert "<ok/>" in a.rpc("<lock><target><candidate/></target></lock>")
    denied = b.rpc("<lock><target><candidate/></target></lock>")
    assert skeleton(denied) == skeleton(fixture("lock-denied.xml"))
    bad = a.rpc(
        '<load-configuration action="set" format="text"><configuration-set>'
        "set firewall family inet filter CORDON-x term t1 then frobnicate"
        "</configuration-set></load-configuration>"
    )
    assert skeleton(bad) == skeleton(fixture("load-syntax-error.xml"))
    a.rpc(
        '<load-configuration action="set" format="text"><configuration-set>'
        "set interfaces irb unit 110 family inet filter output CORDON-missing-OUT"
        "</configuration-set></load-configuration>"
    )
    failed = a.rpc("<commit-configuration><check/></commit-configuration>")
    assert skeleton(failed) == skeleton(fixture("commit-check-failed.xml"))
    assert device.committed == ["system host-name t1"]
    warn = a.rpc(
        '<load-configuration action="set" format="text"><configuration-set>'
        "delete interfaces ge-0/0/1 disable</configuration-set></load-configuration>"
    )
    assert skeleton(warn) == skeleton(fixture("load-warning.xml"))
    ok = a.rpc(
        "<commit-configuration><confirmed/><confirm-timeout>0</confirm-timeout></commit-configuration>"
    )
    assert "1 to 65535 minutes" in ok


def test_twin_daemon_rolls_back_an_unconfirmed_commit(device: twin_device.Device) -> None:
    """commit confirmed then nothing: past its deadline the previous configuration is committed
    again, and the history says why."""
    a = Client(device, 1001)
    a.rpc(
        '<load-configuration action="set" format="text"><configuration-set>'
        "set interfaces ge-0/0/1 disable</configuration-set></load-configuration>"
    )
    reply = a.rpc(
        "<commit-configuration><confirmed/><confirm-timeout>1</confirm-timeout>"
        "<log>tok</log></commit-configuration>"
    )
    assert skeleton(reply) == skeleton(fixture("commit-confirmed.xml"))
    assert "interfaces ge-0/0/1 disable" in device.committed
    assert parse.pending_confirm(a.rpc("<get-commit-information/>")) == "tok"
    assert device.pending is not None
    device.pending["deadline"] = 0.0  # the minute is over
    device.expire()
    assert "interfaces ge-0/0/1 disable" not in device.committed
    assert parse.pending_confirm(a.rpc("<get-commit-information/>")) is None


# -- the EX as an L3 switch in the twin ----------------------------------------------------------

DATA = Path(__file__).with_name("data") / "junos-site.yaml"


def test_the_ex_routes_on_its_irb_bridges_and_an_access_ex_only_bridges() -> None:
    """The test group's EX: one bridge per VLAN named as its IRB unit (the unit's address on
    it, the trunk's leg and its access port in it) and a routing node; the example's EX
    switches (no address) are plain L2 switches with a bridge per VLAN."""
    from agent.inventory import load  # noqa: PLC0415 - registers nothing the other tests need
    from agent.lab.topology import blueprint  # noqa: PLC0415
    from tests.conftest import EXAMPLE  # noqa: PLC0415

    bp = blueprint(load(DATA))
    ns = bp.device_ns["rv-ex1"]
    bridges = {b.name: set(b.ports) for b in bp.bridges if b.ns == ns}
    assert bridges == {
        "irb.110": {"xe-0-1-0.110"},
        "irb.120": {"xe-0-1-0.120", "ge-0-0-2"},
        "irb.130": {"xe-0-1-0.130"},
    }
    assert {(a.ifname, str(a.cidr)) for a in bp.addresses if a.ns == ns} >= {
        ("irb.110", "198.18.91.1/24"),
        ("ge-0-0-47", "198.18.90.1/30"),
    }
    assert bp.nodes[ns].kind == "firewall" and bp.nodes[ns].forwarding
    example = blueprint(load(EXAMPLE))
    for name in ("bz1-sw1", "bz4-sw1"):
        sw = example.device_ns[name]
        assert example.nodes[sw].kind == "switch" and not example.nodes[sw].forwarding
        assert {b.ports for b in example.bridges if b.ns == sw}  # its VLANs are bridges
        assert not [a for a in example.addresses if a.ns == sw and a.ifname != "me0"]


def test_a_trunks_legs_stand_for_it_and_a_disabled_unit_keeps_its_leg_down(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The twin device finds a trunk's per-VLAN legs (a name without a kernel link of its own),
    sets them all down when the trunk is disabled and up again when enabled; a leg that is also a
    declared unit (an SRX's `trunk0.40`) stays down while that unit is disabled."""
    from agent.platforms.juniper_junos.twin import trunk_legs  # noqa: PLC0415

    have = {"me0", "ge-0-0-2", "xe-0-1-0.110", "xe-0-1-0.120", "trunk0.40", "irb.110"}
    kernel = {
        "me0": "me0",
        "ge-0/0/2": "ge-0-0-2",
        "xe-0/1/0": "xe-0-1-0",
        "irb.110": "irb.110",
        "trunk0": "trunk0",
        "trunk0.40": "trunk0.40",
    }
    legs = trunk_legs(kernel, have)
    assert legs == {"xe-0/1/0": ["xe-0-1-0.110", "xe-0-1-0.120"], "trunk0": ["trunk0.40"]}
    up = dict.fromkeys(have, True)
    sent: list[tuple[str, str]] = []

    def flags(kname: str) -> tuple[bool, bool] | None:
        return (up[kname], up[kname]) if kname in up else None

    def run(argv: list[str], stdin: str | None = None) -> object:
        if argv[:3] == ["ip", "link", "set"]:
            sent.append((argv[4], argv[5]))
            up[argv[4]] = argv[5] == "up"
        return type("Done", (), {"returncode": 0, "stderr": "", "stdout": ""})()

    monkeypatch.setattr(twin_device, "_kernel_flags", flags)
    monkeypatch.setattr(twin_device, "_run", run)
    dev = twin_device.Device(tmp_path, kernel, 60.0, legs)
    dev.committed = ["interfaces xe-0/1/0 disable", "interfaces trunk0 unit 40 disable"]
    dev.activate()
    assert sorted(sent) == [
        ("trunk0.40", "down"),
        ("xe-0-1-0.110", "down"),
        ("xe-0-1-0.120", "down"),
    ]
    sent.clear()
    dev.committed = ["interfaces trunk0 unit 40 disable"]
    dev.activate()
    assert sorted(sent) == [("xe-0-1-0.110", "up"), ("xe-0-1-0.120", "up")]


# -- round trips (#18): what the driver sends, recorded at its one RPC call ----------------------


def _recorded(monkeypatch: pytest.MonkeyPatch) -> tuple[driver.JunosDriver, list[str]]:
    """A Junos driver whose RPCs are answered by the documented replies (fixtures) and
    recorded, nothing connected."""
    from agent.drivers.base import Target  # noqa: PLC0415 - test-local
    from agent.inventory import load  # noqa: PLC0415 - test-local

    inv = load(Path(__file__).with_name("data") / "junos-site.yaml")
    d = driver.JunosDriver(Target.of(inv, "rv-ex1"))
    sent: list[str] = []
    replies = {
        "get-configuration": "get-configuration-set.xml",
        "get-interface-information": "get-interface-information.xml",
        "commit-configuration": "commit-success.xml",
    }

    def rpc(xml: str, operation: str, *, command: str | None = None) -> str:
        tag = re.match(r"<([a-z-]+)", xml)
        assert tag is not None
        sent.append(xml)
        name = replies.get(tag.group(1))
        return (FIX / name).read_text() if name else "<rpc-reply><ok/></rpc-reply>"

    monkeypatch.setattr(d, "_rpc", rpc)
    return d, sent


def test_a_change_is_one_transaction_without_a_separate_commit_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """lock, the candidate read, load, commit, unlock: no `<check/>` before the commit (the
    commit checks the candidate itself and commits nothing when the check fails)."""
    d, sent = _recorded(monkeypatch)
    d.apply(ChangeSet(("set interfaces ge-0/0/5 disable",), action="test"))
    tags = [re.match(r"<([a-z-]+)", x).group(1) for x in sent]  # type: ignore[union-attr]
    assert tags == ["lock", "load-configuration", "commit-configuration", "unlock"]
    sent.clear()
    d.apply(ChangeSet(tuple(render.filters_script(STATE).splitlines()), action="test"))
    tags = [re.match(r"<([a-z-]+)", x).group(1) for x in sent]  # type: ignore[union-attr]
    assert tags == [
        "lock",
        "get-configuration",
        "load-configuration",
        "commit-configuration",
        "unlock",
    ]
    assert not any("<check/>" in x for x in sent)


def test_a_flow_verification_reads_the_interfaces_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """ReadsInterfaces: one RPC, not facts' two (the whole committed configuration besides)."""
    from agent.platforms.capabilities import ReadsInterfaces, having  # noqa: PLC0415

    d, sent = _recorded(monkeypatch)
    reader = having(d, ReadsInterfaces)
    assert reader is not None
    found = reader.interfaces("decide")
    assert found and len(sent) == 1 and sent[0].startswith("<get-interface-information>")


def test_a_refused_commit_is_rejected_discarded_and_consumes_the_armed_revert(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The commit's reply holds `<rpc-error>`s (the documented failed check): ncclient raises
    them as the manager does (raise_mode errors), the driver says CommandRejected with the
    device's words, discards the candidate and unlocks; the armed `commit confirmed` is used
    up (the next commit is a plain one, nothing is left to confirm)."""
    from ncclient.operations.rpc import RPCError, RPCReply  # noqa: PLC0415 - test-local
    from ncclient.xml_ import to_ele  # noqa: PLC0415 - test-local

    from agent.drivers.base import Target  # noqa: PLC0415 - test-local
    from agent.errors import CommandRejected  # noqa: PLC0415 - test-local
    from agent.inventory import load  # noqa: PLC0415 - test-local

    inv = load(Path(__file__).with_name("data") / "junos-site.yaml")
    d = driver.JunosDriver(Target.of(inv, "rv-ex1"))
    sent: list[str] = []
    failed = (FIX / "commit-check-failed.xml").read_text()

    class Manager:
        connected = True

        def rpc(self, xml: str) -> str:
            sent.append(xml)
            if xml.startswith("<commit-configuration>"):
                reply = RPCReply(failed)
                reply.parse()
                raise RPCError(to_ele(failed), errs=reply.errors)
            return "<rpc-reply><ok/></rpc-reply>"

    d._mgr = Manager()
    monkeypatch.setattr(d, "connect", lambda: None)
    d._armed = ("cordon-deadman-0123456789ab", 1)
    with pytest.raises(CommandRejected, match="is not defined") as refused:
        d.apply(ChangeSet(("set interfaces ge-0/0/5 disable",), action="test"))
    assert refused.value.command == "commit confirmed 1"
    tags = [re.match(r"<([a-z-]+)", x).group(1) for x in sent]  # type: ignore[union-attr]
    assert tags == [
        "lock",
        "load-configuration",
        "commit-configuration",
        "discard-changes",
        "unlock",
    ]
    assert "<confirmed/>" in sent[2]
    assert d._armed is None and not d._committed  # consumed: nothing to confirm
    sent.clear()
    with pytest.raises(CommandRejected):
        d.apply(ChangeSet(("set interfaces ge-0/0/5 disable",), action="test"))
    assert "<confirmed/>" not in sent[2]  # the next commit is a plain one
