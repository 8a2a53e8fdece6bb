"""The accepts that keep a flow open through a cut let exactly that flow through, with real
packets on the twin, on every firewall platform of the example (FortiGate at La Sagesse and
Nantes, Stormshield SNS at Fontenay, Linux nftables at Bretagne 2): a connection opened from the
client to the service's port, its replies, and a connection that was open before the cut. A
connection opened the other way, from the server host with the service's port as its *source*
port, is dropped by the cut firewall (allow_flow, block_zones' must-survive exceptions), or
counted by the soak as a new connection toward the core (reconnect_zone, whose zone is
reconnected: its declared accepts must not hide it from the soak).

The rules are the planner's, rendered by the platform's `Rules.script` and sent by its driver
(nft script over SSH, FortiOS objects over the REST API, SNS filter rules over serverd); every
firewall touched is put back to normal after.

What differs between platforms, asserted here (`test_a_connection_not_kept_open_before_the_cut`):
a connection open before a cut that does not keep it is stopped by nft (its drops are stateless)
and by FortiGate (`firewall-session-dirty check-all` re-checks sessions against the new policies),
but on SNS it goes on here: its state table passes an established connection without a rule
lookup, and the driver's `MONITOR FLUSH STATE` after a cut flushes every host of the cut but the
ends of a must-survive flow, which this connection's client is (its other pre-cut connections
are kept with it; `tests/platforms/stormshield` shows a flushed host's connection stopped)."""

from __future__ import annotations

import dataclasses
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.drivers.base import ChangeSet, Driver, Target
from agent.engine import soak
from agent.engine.plan import Plan, plan, require_safe
from agent.inventory.models import Endpoint, Flow
from agent.lab import flows, netns
from agent.network.paths import flow_path
from agent.network.state import NORMAL, DeviceState, allow_rules
from agent.platforms import registry
from agent.platforms.capabilities import Counters, ReadsRuleComments
from agent.platforms.linux_nftables import parse, render
from agent.platforms.linux_nftables.driver import counter_packets
from agent.platforms.spec import Rules
from agent.playbook import load as load_playbook
from agent.playbook.models import Playbook
from tests.conftest import ROOT, Twin

pytestmark = pytest.mark.twin

# Client ports the forged SYNs aim at: nothing of the twin listens there (the client's kernel
# answers RST), and each SYN gets a port of its own, so each is a new connection to conntrack.
FORGED_PORTS = (47101, 47102, 47103)


@dataclasses.dataclass(frozen=True)
class Case:
    """Where a platform's exceptions are exercised: an isolated site and its firewall, the
    must-survive flow block_zones keeps there, the site whose WAN cut keeps its backup to the
    core (allow_flow), and for the reconnected servers zone a flow whose server side opens new
    connections toward the core from its service port (`from_server`: the zone's host is the
    flow's destination and answers the WAN side; else it is the source, talking to the core)."""

    site: str
    firewall: str
    kept: str
    wan_site: str
    backup: str
    soak_flow: str
    from_server: bool


CASES = {
    "fortigate": Case(
        "rennes-la-sagesse",
        "rns-fw1",
        "rns-lab-lis",
        "nantes-jules-verne",
        "nts-backup-core",
        "stn-lab-rns",
        True,
    ),
    "stormshield": Case(
        "fontenay-sud-vendee",
        "fnt-fw1",
        "fnt-lab-lis",
        "fontenay-sud-vendee",
        "fnt-backup-core",
        "fnt-ehr-core",
        False,
    ),
    "linux_nftables": Case(
        "bretagne-etab-2",
        "bz2-fw1",
        "bz2-lab-lis",
        "bretagne-etab-2",
        "bz2-backup-core",
        "bz2-ehr-core",
        False,
    ),
}
PLATFORMS = sorted(CASES)


# -- packets ---------------------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def syn(src: str, sport: int, dst: str, dport: int) -> bytes:
    """An IPv4 TCP SYN from src:sport to dst:dport (the kernel fills the IP checksum)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 0x1CEB00DA, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(tcp),
        0,
        0,
        64,
        socket.IPPROTO_TCP,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    return ip + tcp


def host_ns(twin: Twin, ep: Endpoint) -> str:
    return twin.bp.host_ns[f"{ep.site}/{ep.zone}/{ep.host}"]


@contextmanager
def sniffing(ns: str) -> Iterator[socket.socket]:
    """A raw socket in `ns` that sees a copy of every TCP packet the host receives."""
    with netns.inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    try:
        yield s
    finally:
        s.close()


def forged_syns_arriving(
    twin: Twin, flow: Flow, sport: int | None = None, *, from_server: bool = True
) -> set[int]:
    """Send, from inside the server host's namespace, a SYN with the service's port (or `sport`)
    as source port to each of FORGED_PORTS of the client host; return the ports it reached.
    `from_server=False`: from the client host, with the service's port as its source port, to
    the server host (a new connection the other way round from a declared port)."""
    path = flow_path(twin.inv, flow)
    sport = path.port if sport is None else sport
    server, client = host_ns(twin, flow.destination), host_ns(twin, flow.source)
    src, dst, src_ip, dst_ip = (server, client, path.dst, path.src)
    if not from_server:
        src, dst, src_ip, dst_ip = (client, server, path.src, path.dst)
    with sniffing(dst) as sniff:
        with netns.inside(src):
            raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        try:
            for port in FORGED_PORTS:
                raw.sendto(syn(src_ip, sport, dst_ip, port), (dst_ip, 0))
        finally:
            raw.close()
        return _arrived(sniff, src_ip, sport, dst_ip, deadline=time.monotonic() + 2.0)


def _arrived(sniff: socket.socket, src: str, sport: int, dst: str, *, deadline: float) -> set[int]:
    """The FORGED_PORTS that a SYN from src:sport reached on `dst` before `deadline` (a bounded
    wait for packets that may never come: a dropped packet has no other sign)."""
    seen: set[int] = set()
    while seen != set(FORGED_PORTS) and (left := deadline - time.monotonic()) > 0:
        sniff.settimeout(left)
        try:
            pkt = sniff.recv(65535)
        except TimeoutError:
            break
        ihl = (pkt[0] & 0x0F) * 4
        p_src, p_dst = socket.inet_ntoa(pkt[12:16]), socket.inet_ntoa(pkt[16:20])
        p_sport, p_dport = struct.unpack("!HH", pkt[ihl : ihl + 4])
        if (p_src, p_sport, p_dst) == (src, sport, dst) and pkt[ihl + 13] & 0x02:
            seen.add(p_dport)
    return seen


# -- firewalls ------------------------------------------------------------------------------------


def rules_of(twin: Twin, device: str) -> Rules:
    """How the device's platform holds packet rules."""
    found = twin.inv.find_device(device)
    assert found is not None
    rules = registry.platform(found[1].platform).rules
    assert rules is not None, device
    return rules


@contextmanager
def driver(twin: Twin, device: str) -> Iterator[Driver]:
    method = rules_of(twin, device).method
    with registry.one_shot(Target.of(twin.inv, device), via=registry.via(method)) as d:
        yield d


def load(twin: Twin, device: str, state: DeviceState) -> None:
    """Make Cordon's rules on the device exactly `state`: the platform's script, sent by its
    driver as the executor sends it."""
    script = rules_of(twin, device).script(state)
    with driver(twin, device) as d:
        d.apply(ChangeSet(tuple(script.splitlines()), action="test.stateful"))


def final_states(twin: Twin, *plans: Plan) -> dict[str, DeviceState]:
    """The rule state each firewall holds after `plans` (changes by the platform's rules
    method; interface shutdowns are not rules)."""
    out: dict[str, DeviceState] = {}
    for p in plans:
        for change in p.changes:
            if change.method == rules_of(twin, change.device).method:
                out[change.device] = change.after
    return out


@contextmanager
def applied(twin: Twin, states: dict[str, DeviceState]) -> Iterator[None]:
    """The firewalls in `states` loaded for the block, and back to normal whatever happens."""
    try:
        for device, state in states.items():
            load(twin, device, state)
        yield
    finally:
        failed = []
        for device in states:
            try:
                load(twin, device, NORMAL)
            except Exception as exc:  # every firewall gets its chance to go back to normal
                failed.append(f"{device}: {exc}")
        assert not failed, failed


def playbook(twin: Twin, tmp_path: Path, text: str) -> Playbook:
    path = tmp_path / "pb.yaml"
    path.write_text(text)
    return load_playbook(path, twin.inv)


def isolate(twin: Twin, site: str) -> Plan:
    pb = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", twin.inv)
    return require_safe(plan(pb, twin.inv, sites=[site]))


def flow(twin: Twin, name: str) -> Flow:
    return next(f for f in twin.inv.flows if f.name == name)


def connects(twin: Twin, f: Flow) -> bool:
    return all(o.observed_open for o in flows.observe(twin.inv, twin.bp, flows=[f], timeout=2.0))


def nft_counters(twin: Twin, device: str) -> dict[str, int]:
    """Packets counted by each commented rule of a Linux firewall's table, read in its
    namespace (every rule: the reply accepts too, which the platform-neutral read skips)."""
    out = netns.run(
        ["nft", "-j", "list", "table", "inet", "cordon"], netns=twin.bp.device_ns[device]
    ).stdout
    got: dict[str, int] = {}
    for rule in parse.parse_nft_json(out).rules:
        packets = counter_packets(rule.expr)
        if rule.comment and packets is not None:
            got[rule.comment] = got.get(rule.comment, 0) + packets
    return got


def counters(twin: Twin, device: str) -> dict[str, int]:
    """The counters of Cordon's rules as the soak reads them (the driver's `rule_counters`)."""
    with driver(twin, device) as d:
        assert isinstance(d, Counters)
        return d.rule_counters()


def read_back(twin: Twin, device: str) -> frozenset[str]:
    """Cordon's rules on the device as the driver reads them back (comments / object lines)."""
    with driver(twin, device) as d:
        assert isinstance(d, ReadsRuleComments)
        return frozenset(d.rule_comments() or ())


# -- the three kinds of exception ----------------------------------------------------------------


@pytest.mark.parametrize("platform", PLATFORMS)
def test_must_survive_exception_of_block_zones_lets_no_connection_open_backwards(
    twin: Twin, platform: str
) -> None:
    """isolate-site keeps the site's lab -> LIS flow (lab analyser -> lab system, port 5001)
    through the block: the analyser still connects, but the lab server, from port 5001, can no
    longer open a connection to any port of the analyser."""
    case = CASES[platform]
    lis = flow(twin, case.kept)
    assert forged_syns_arriving(twin, lis) == set(FORGED_PORTS)  # the uncut twin: they arrive
    states = final_states(twin, isolate(twin, case.site))
    assert list(states) == [case.firewall]
    rules = rules_of(twin, case.firewall)
    with applied(twin, states):
        assert connects(twin, lis)
        assert forged_syns_arriving(twin, lis) == set()
        # read back as the driver reads it: exactly the rendered rules
        assert read_back(twin, case.firewall) == rules.comments(states[case.firewall])
        # the kept flow's request rule saw its connection
        path = flow_path(twin.inv, lis)
        request = next(r for r in allow_rules(path, case.firewall, "x") if not r.reply)
        kept = next(
            r for r in states[case.firewall].rules if not r.reply and r.fields() == request.fields()
        )
        assert counters(twin, case.firewall).get(rules.counted_as(kept), 0) > 0
        if platform == "linux_nftables":
            seen = nft_counters(twin, case.firewall)
            assert sorted(seen) == sorted(render.nft_comments(states[case.firewall]))
            stateful = [c for c in seen if c.startswith(f"must survive: {case.kept}")]
            assert len(stateful) == 3 and sum(seen[c] for c in stateful) > 0


@pytest.mark.parametrize("platform", PLATFORMS)
def test_allow_flow_lets_no_connection_open_backwards(
    twin: Twin, tmp_path: Path, platform: str
) -> None:
    """A site's WAN cut with allow_flow for its backup to the core (port 9102): the backup still
    connects; the core's backup server, from port 9102, cannot open one to the site's host."""
    case = CASES[platform]
    pb = playbook(
        twin,
        tmp_path,
        "name: keep-backup\nlevel: L2\nsteps:\n"
        "  - {name: cut-wan, action: cut_link, kinds: [wan]}\n"
        f"  - {{name: keep, action: allow_flow, flow: {case.backup}}}\n",
    )
    p = require_safe(plan(pb, twin.inv, sites=[case.wan_site]))
    backup = flow(twin, case.backup)
    assert {fi.flow: fi.after for fi in p.impact}[case.backup] is True
    states = final_states(twin, p)
    assert {rules_of(twin, d).method for d in states} == {rules_of(twin, case.firewall).method}
    assert forged_syns_arriving(twin, backup) == set(FORGED_PORTS)
    with applied(twin, states):
        assert connects(twin, backup)
        assert forged_syns_arriving(twin, backup) == set()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_reconnect_declared_accepts_hide_no_new_connection_from_the_soak(
    twin: Twin, tmp_path: Path, platform: str
) -> None:
    """A site isolated, then its servers zone reconnected. A declared flow of that zone
    connects. A host of the zone opening new connections from that flow's service port is not
    that flow: each one is counted by the zone's soak counter. At La Sagesse the flow is
    stn-lab-rns (Saint-Nazaire's analyser -> the Rennes lab server, port 5001), where a
    stateless reply accept used to take the server's openings first and hide them; at the other
    sites, whose servers zone serves nothing to the WAN, it is the zone's EHR -> core flow,
    opened the other way from the EHR's port 443."""
    case = CASES[platform]
    isolated = isolate(twin, case.site)
    pb = playbook(
        twin,
        tmp_path,
        "name: reconnect-servers\nlevel: L0\nsteps:\n"
        "  - {name: servers, action: reconnect_zone, zones: {zones: [servers]}}\n",
    )
    before_states = final_states(twin, isolated)
    p = require_safe(plan(pb, twin.inv, sites=[case.site], current=before_states))
    states = final_states(twin, isolated, p)
    site_model = twin.inv.site(case.site)
    assert site_model is not None
    watch = soak.watched(site_model, states)
    fw = case.firewall
    assert list(watch) == [fw] and set(watch[fw].values()) == {"servers"}
    declared = flow(twin, case.soak_flow)
    path = flow_path(twin.inv, declared)
    with applied(twin, states):
        assert connects(twin, declared)
        before = counters(twin, fw)
        if case.from_server:
            forged_syns_arriving(twin, declared)
        else:
            forged_syns_arriving(twin, declared, path.port, from_server=False)
        after = counters(twin, fw)
    counted = sum(after.get(c, 0) - before.get(c, 0) for c in watch[fw])
    assert counted >= len(FORGED_PORTS)


# -- a connection open before the cut -------------------------------------------------------------

# A port of the lab server no twin service uses: the test serves it itself, so both ends of a
# long-lived connection are in its hands.
PRE_CUT_PORT = 47001


@contextmanager
def pre_cut_connection(twin: Twin, f: Flow) -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connection on the path of `f` to PRE_CUT_PORT of its server host, open: (client end,
    server end)."""
    path = dataclasses.replace(flow_path(twin.inv, f), port=PRE_CUT_PORT)
    with netns.inside(host_ns(twin, f.destination)):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with netns.inside(host_ns(twin, f.source)):
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((path.dst, PRE_CUT_PORT))
        listener.listen(1)
        client.settimeout(5.0)
        client.connect((path.dst, PRE_CUT_PORT))
        listener.settimeout(5.0)
        served, _ = listener.accept()
        served.settimeout(5.0)
        try:
            yield client, served
        finally:
            served.close()
    finally:
        client.close()
        listener.close()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_connection_open_before_the_cut_survives_it(twin: Twin, platform: str) -> None:
    """A connection on the path of a must-survive flow, opened before the cut, keeps working
    both ways after it, the server speaking first (the firewall's connection tracking may first
    see it mid-stream, from the server's side); and the server cannot open one backwards."""
    case = CASES[platform]
    lis = flow(twin, case.kept)
    path = dataclasses.replace(flow_path(twin.inv, lis), port=PRE_CUT_PORT)
    states = final_states(twin, isolate(twin, case.site))
    states[case.firewall] = states[case.firewall].with_rules(
        allow_rules(path, case.firewall, "must survive: pre-cut test")
    )
    with pre_cut_connection(twin, lis) as (client, served), applied(twin, states):
        served.sendall(b"after the cut, server first\n")
        assert _recv_line(client) == b"after the cut, server first\n"
        client.sendall(b"and the client answers\n")
        assert _recv_line(served) == b"and the client answers\n"
        assert forged_syns_arriving(twin, lis, PRE_CUT_PORT) == set()


# What each platform does to a connection open before a cut that does not keep it (see the
# module docstring): True, it goes on; False, the cut stops it.
SURVIVES_UNKEPT = {"linux_nftables": False, "fortigate": False, "stormshield": True}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_connection_not_kept_open_before_the_cut(twin: Twin, platform: str) -> None:
    """A connection on the lab -> servers path that no exception keeps, opened before the cut:
    nft and FortiGate stop its client's packets at the cut; the SNS appliance's state table
    lets it go on (its client is a must-survive flow's end: its states are not flushed). New
    connections are cut everywhere."""
    case = CASES[platform]
    lis = flow(twin, case.kept)
    states = final_states(twin, isolate(twin, case.site))
    with pre_cut_connection(twin, lis) as (client, served), applied(twin, states):
        client.settimeout(2.0)
        served.settimeout(2.0)
        try:
            client.sendall(b"from the client after the cut\n")
            got = _recv_line(served)
        except OSError:
            got = b""
        assert (got == b"from the client after the cut\n") is SURVIVES_UNKEPT[platform], got
        # a new connection on the same path is cut on every platform
        with netns.inside(host_ns(twin, lis.source)):
            fresh = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            fresh.settimeout(2.0)
            with pytest.raises(OSError):
                fresh.connect((flow_path(twin.inv, lis).dst, PRE_CUT_PORT))
        finally:
            fresh.close()


def _recv_line(s: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data
