"""The accepts that keep a flow open through a cut let exactly that flow through, with real
packets on the twin: a connection opened from the client to the service's port, its replies, and
a connection that was open before the cut. A connection opened the other way, from the server
host with the service's port as its *source* port, is dropped by the cut firewall (allow_flow,
block_zones' must-survive exceptions), or counted by the soak as a new connection toward the core
(reconnect_zone, whose zone is reconnected: its declared accepts must not hide it from the soak).

The rules are the planner's, rendered by `render.nft_table` and loaded with `nft -f` into the
firewall's namespace, as the driver does; every firewall touched is put back to normal after."""

from __future__ import annotations

import dataclasses
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.engine import soak
from agent.engine.plan import Plan, plan, require_safe
from agent.inventory.models import Endpoint, Flow
from agent.lab import flows, netns
from agent.network.paths import flow_path
from agent.network.state import NORMAL, DeviceState, allow_rules
from agent.platforms.linux_nftables import parse, render
from agent.platforms.linux_nftables.driver import counter_packets
from agent.playbook import load as load_playbook
from agent.playbook.models import Playbook
from tests.conftest import ROOT, Twin

pytestmark = pytest.mark.twin

# Client ports the forged SYNs aim at: nothing of the twin listens there (the client's kernel
# answers RST), and each SYN gets a port of its own, so each is a new connection to conntrack.
FORGED_PORTS = (47101, 47102, 47103)


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


def forged_syns_arriving(twin: Twin, flow: Flow, sport: int | None = None) -> set[int]:
    """Send, from inside the server host's namespace, a SYN with the service's port (or `sport`)
    as source port to each of FORGED_PORTS of the client host; return the ports it reached."""
    path = flow_path(twin.inv, flow)
    sport = path.port if sport is None else sport
    server, client = host_ns(twin, flow.destination), host_ns(twin, flow.source)
    with sniffing(client) as sniff:
        with netns.inside(server):
            raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        try:
            for port in FORGED_PORTS:
                raw.sendto(syn(path.dst, sport, path.src, port), (path.src, 0))
        finally:
            raw.close()
        return _arrived(sniff, path.dst, sport, path.src, deadline=time.monotonic() + 2.0)


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


def load(twin: Twin, device: str, state: DeviceState) -> None:
    """Make the device's `table inet cordon` exactly `state`, with the script the driver sends."""
    netns.run(["nft", "-f", "-"], netns=twin.bp.device_ns[device], input=render.nft_table(state))


def final_states(*plans: Plan) -> dict[str, DeviceState]:
    out: dict[str, DeviceState] = {}
    for p in plans:
        for change in p.changes:
            if change.method == "nft":
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
        for device in states:
            load(twin, device, NORMAL)


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


def counters(twin: Twin, device: str) -> dict[str, int]:
    """Packets counted by each commented rule of the device's table (as the driver reads them)."""
    out = netns.run(
        ["nft", "-j", "list", "table", "inet", "cordon"], netns=twin.bp.device_ns[device]
    ).stdout
    got: dict[str, int] = {}
    for rule in parse.parse_nft_json(out).rules:
        packets = counter_packets(rule.expr)
        if rule.comment and packets is not None:
            got[rule.comment] = got.get(rule.comment, 0) + packets
    return got


# -- the three kinds of exception ----------------------------------------------------------------


def test_must_survive_exception_of_block_zones_lets_no_connection_open_backwards(
    twin: Twin,
) -> None:
    """isolate-site at La Sagesse keeps rns-lab-lis (lab analyser -> lab system, port 5001)
    through the block: the analyser still connects, but the lab server, from port 5001, can no
    longer open a connection to any port of the analyser."""
    lis = flow(twin, "rns-lab-lis")
    assert forged_syns_arriving(twin, lis) == set(FORGED_PORTS)  # the uncut twin: they arrive
    states = final_states(isolate(twin, "rennes-la-sagesse"))
    with applied(twin, states):
        assert connects(twin, lis)
        assert forged_syns_arriving(twin, lis) == set()
        # read back as the driver reads it: exactly the rendered rules, each with its counter
        seen = counters(twin, "rns-fw1")
        assert sorted(seen) == sorted(render.nft_comments(states["rns-fw1"]))
        stateful = [c for c in seen if c.startswith("must survive: rns-lab-lis")]
        assert len(stateful) == 3 and sum(seen[c] for c in stateful) > 0


def test_allow_flow_lets_no_connection_open_backwards(twin: Twin, tmp_path: Path) -> None:
    """Nantes' WAN cut with allow_flow for its backup to the core (port 9102): the backup still
    connects; the core's backup server, from port 9102, cannot open one to the Nantes host."""
    pb = playbook(
        twin,
        tmp_path,
        "name: keep-backup\nlevel: L2\nsteps:\n"
        "  - {name: cut-wan, action: cut_link, kinds: [wan]}\n"
        "  - {name: keep, action: allow_flow, flow: nts-backup-core}\n",
    )
    p = require_safe(plan(pb, twin.inv, sites=["nantes-jules-verne"]))
    backup = flow(twin, "nts-backup-core")
    assert {fi.flow: fi.after for fi in p.impact}["nts-backup-core"] is True
    with applied(twin, final_states(p)):
        assert connects(twin, backup)
        assert forged_syns_arriving(twin, backup) == set()


def test_reconnect_declared_accepts_hide_no_new_connection_from_the_soak(
    twin: Twin, tmp_path: Path
) -> None:
    """La Sagesse isolated, then its servers zone reconnected. stn-lab-rns (Saint-Nazaire's
    analyser -> the Rennes lab server, port 5001) is a declared flow of that zone: it connects.
    The Rennes lab server opening connections toward the core from port 5001 is not that flow:
    each one is counted by the zone's soak counter, where the stateless reply accept used to
    take it first and hide it."""
    site = "rennes-la-sagesse"
    isolated = isolate(twin, site)
    pb = playbook(
        twin,
        tmp_path,
        "name: reconnect-servers\nlevel: L0\nsteps:\n"
        "  - {name: servers, action: reconnect_zone, zones: {zones: [servers]}}\n",
    )
    p = require_safe(plan(pb, twin.inv, sites=[site], current=final_states(isolated)))
    states = final_states(isolated, p)
    site_model = twin.inv.site(site)
    assert site_model is not None
    watch = soak.watched(site_model, states)
    assert list(watch) == ["rns-fw1"] and set(watch["rns-fw1"].values()) == {"servers"}
    lab = flow(twin, "stn-lab-rns")
    with applied(twin, states):
        assert connects(twin, lab)
        before = counters(twin, "rns-fw1")
        forged_syns_arriving(twin, lab)
        after = counters(twin, "rns-fw1")
    counted = sum(after[c] - before[c] for c in watch["rns-fw1"])
    assert counted >= len(FORGED_PORTS)


# -- a connection open before the cut -------------------------------------------------------------

# A port of the Rennes lab server no twin service uses: the test serves it itself, so both ends
# of a long-lived connection are in its hands.
PRE_CUT_PORT = 47001


def test_a_connection_open_before_the_cut_survives_it(twin: Twin) -> None:
    """A connection on the path of a must-survive flow, opened before the cut, keeps working
    both ways after it, the server speaking first (the firewall's connection tracking may first
    see it mid-stream, from the server's side); and the server cannot open one backwards."""
    lis = flow(twin, "rns-lab-lis")
    path = dataclasses.replace(flow_path(twin.inv, lis), port=PRE_CUT_PORT)
    server_ns, client_ns = host_ns(twin, lis.destination), host_ns(twin, lis.source)
    states = final_states(isolate(twin, "rennes-la-sagesse"))
    states["rns-fw1"] = states["rns-fw1"].with_rules(
        allow_rules(path, "rns-fw1", "must survive: pre-cut test")
    )
    with netns.inside(server_ns):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with netns.inside(client_ns):
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
            with applied(twin, states):
                served.sendall(b"after the cut, server first\n")
                assert _recv_line(client) == b"after the cut, server first\n"
                client.sendall(b"and the client answers\n")
                assert _recv_line(served) == b"and the client answers\n"
                assert forged_syns_arriving(twin, lis, PRE_CUT_PORT) == set()
        finally:
            served.close()
    finally:
        client.close()
        listener.close()


def _recv_line(s: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data
