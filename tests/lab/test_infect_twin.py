"""An infected host of the twin really scans the core: with its site's WAN cut (the agent's own
rules in the firewall's own syntax, loaded through its driver: La Sagesse is behind a FortiGate)
its SYNs leave its zone and die at the firewall, counted by the agent's rule, none reaches a core
host; with the WAN open every core host sees connection attempts on its declared
and undeclared ports. The scanner is one recorded process, `cure` stops it (PID gone), and it
never targets anything outside 198.18.0.0/15 nor runs in the root namespace."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from agent.cli.commands.lab import lab as lab_cli
from agent.drivers.base import ChangeSet, Target
from agent.errors import LabError
from agent.inventory import load
from agent.lab import build, daemons, infect, netns, scanner
from agent.lab.state import LabState
from agent.lab.topology import blueprint
from agent.network.state import NORMAL, DeviceState, NftRule
from agent.platforms import registry
from agent.platforms.capabilities import Counters
from agent.platforms.linux_nftables.driver import counter_packets
from agent.platforms.linux_nftables.parse import parse_nft_json
from agent.platforms.registry import one_shot
from agent.platforms.spec import Rules
from tests.conftest import EXAMPLE, Twin
from tests.lab.twinops import wait_for

HOST = "rennes-la-sagesse/admin/pc-admin-1"
SRC = "198.18.15.10"  # its address
FW = "rns-fw1"  # its site's firewall (a FortiGate in the example)
WAN = "wan0"  # rns-fw1's link to the core
COUNT = "cordon_test_scan"  # test-only table: counts the scanner's SYNs where it is installed
CUT = NftRule("drop", oif=WAN, tag="test wan cut")  # applied by the firewall's own rules method
SYN = "tcp flags & (syn | ack) == syn"


# ------------------------------------------------------------------ without the twin (pure)


def test_targets_are_every_core_host_on_declared_and_undeclared_ports() -> None:
    """The blueprint's core hosts, each on its declared service port and on 445, 3389, 22, 135."""
    inv = load(EXAMPLE)
    targets = infect.core_targets(inv, blueprint(inv))
    by_host: dict[str, set[int]] = {}
    for t in targets:
        by_host.setdefault(t.address, set()).add(t.port)
    extra = set(infect.EXTRA_PORTS)
    assert by_host == {
        "198.18.0.10": {443} | extra,  # hgo-core/servers/dpi-central
        "198.18.1.10": {9102} | extra,  # hgo-core/backup/backup-srv
        "198.18.2.10": {389} | extra,  # hgo-core/identity/ad-dc
    }
    assert len(targets) == 15


@pytest.mark.parametrize("target", ["192.0.2.1:80", "10.0.0.1:445", "198.20.0.1:22", "::1:22"])
def test_scanner_refuses_targets_outside_the_sandbox(
    target: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A target outside 198.18.0.0/15 is a SafetyError (exit 10) before any socket exists."""

    def no_socket(*args: object, **kwargs: object) -> socket.socket:
        raise AssertionError("the scanner opened a socket")

    monkeypatch.setattr(socket, "socket", no_socket)
    assert scanner.main(["--netns", "cdn.x", "--rate", "1", "198.18.0.10:443", target]) == 10
    assert "twin range" in capsys.readouterr().err


def test_scanner_refuses_the_root_namespace(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run where the tests run (the machine's namespace), the scanner refuses to start."""

    def no_socket(*args: object, **kwargs: object) -> socket.socket:
        raise AssertionError("the scanner opened a socket")

    monkeypatch.setattr(socket, "socket", no_socket)
    assert scanner.main(["--netns", "cdn.x", "--rate", "1", "198.18.0.10:443"]) == 10
    assert "runs in the machine's root network namespace" in capsys.readouterr().err


# ------------------------------------------------------------------------------ on the twin


def _table(rules: list[str], hook: str) -> str:
    body = "\n".join(f"    {r}" for r in rules)
    return (
        f"table inet {COUNT} {{\n  chain c {{\n"
        f"    type filter hook {hook} priority -100; policy accept;\n{body}\n  }}\n}}\n"
    )


def counts(ns: str) -> dict[str, int]:
    """Packets per rule comment of the test table in namespace `ns`."""
    out = netns.run(["nft", "-j", "list", "table", "inet", COUNT], netns=ns).stdout
    found: dict[str, int] = {}
    for rule in parse_nft_json(out).rules:
        packets = counter_packets(rule.expr)
        assert rule.comment is not None and packets is not None
        found[rule.comment] = packets
    return found


@pytest.fixture
def core_hosts(twin: Twin) -> Iterator[dict[str, list[int]]]:
    """Each core host's namespace -> the ports the scanner targets there, with a test table in
    the namespace counting SYNs from the infected host per port (removed afterwards)."""
    ports: dict[str, list[int]] = {}
    targets = infect.core_targets(twin.inv, twin.bp)
    for t in targets:
        ns = next(a.ns for a in twin.bp.addresses if str(a.cidr.ip) == t.address)
        ports.setdefault(ns, []).append(t.port)
    made: list[str] = []
    try:
        for ns, wanted in ports.items():
            rules = [f'ip saddr {SRC} {SYN} tcp dport {p} counter comment "{p}"' for p in wanted]
            made.append(ns)
            netns.run(["nft", "-f", "-"], netns=ns, input=_table(rules, "input"))
        yield ports
    finally:
        for ns in made:
            netns.run(["nft", "delete", "table", "inet", COUNT], netns=ns, check=False)


@pytest.fixture
def leaving(twin: Twin) -> Iterator[str]:
    """rns-fw1's namespace, with a test table counting the infected host's SYNs as they enter
    the firewall from its zone (before any filtering)."""
    ns = twin.bp.device_ns[FW]
    rule = f'iifname "lan0.190" ip saddr {SRC} {SYN} counter comment "from-admin"'
    netns.run(["nft", "-f", "-"], netns=ns, input=_table([rule], "prerouting"))
    try:
        yield ns
    finally:
        netns.run(["nft", "delete", "table", "inet", COUNT], netns=ns, check=False)


def _rules(twin: Twin) -> Rules:
    """How the firewall holds Cordon's packet rules (its platform's own syntax)."""
    found = twin.inv.find_device(FW)
    assert found is not None
    rules = registry.platform(str(found[1].platform)).rules
    assert rules is not None
    return rules


def _script(rules: Rules, state: DeviceState, action: str) -> ChangeSet:
    return ChangeSet(tuple(rules.script(state).splitlines()), action=action)


def _scanner_procs(state: LabState) -> list[dict[str, object]]:
    return [p for p in state.procs if p.get("kind") == infect.KIND]


@pytest.mark.twin
def test_infected_host_scans_the_core_only_when_its_wan_is_open(
    twin: Twin, core_hosts: dict[str, list[int]], leaving: str
) -> None:
    ns = twin.bp.host_ns[HOST]
    assert infect.infected() == []
    assert netns.pids(ns) == []  # a twin host runs nothing of its own
    n_targets = sum(len(p) for p in core_hosts.values())
    rules = _rules(twin)
    cut = rules.counted_as(CUT)  # the key of the cut rule's counter on this platform
    with one_shot(Target.of(twin.inv, FW)) as fw:
        assert isinstance(fw, Counters)
        try:
            fw.apply(_script(rules, DeviceState().with_rules([CUT]), "test.wan_cut"))
            pid = infect.infect(HOST, rate=50)
            proc = _recorded(pid)
            try:
                assert infect.infect(HOST, rate=50) == pid  # idempotent: one scanner
                assert netns.pids(ns) == [pid]
                state = LabState.load(build.DEFAULT_LAB)
                assert state is not None
                assert [p["pid"] for p in _scanner_procs(state)] == [pid]
                [sick] = infect.infected()
                assert (sick.host, sick.pid, sick.running, sick.targets) == (
                    HOST,
                    pid,
                    True,
                    n_targets,
                )
                shown = CliRunner().invoke(lab_cli, ["status"])
                assert shown.exit_code == 0, shown.output
                assert f"{HOST}: scanner pid {pid} running" in shown.output

                # WAN cut: the SYNs leave the zone (every target three times over) and are
                # dropped by the agent's rule; not one reaches a core host.
                def seen_cut() -> bool:
                    leaving_n = counts(leaving)["from-admin"]
                    return leaving_n >= 3 * n_targets and fw.rule_counters()[cut] >= 3 * n_targets

                assert wait_for(seen_cut, timeout=60)
                assert all(set(counts(h).values()) == {0} for h in core_hosts)

                # WAN open: every core host sees attempts on each of its targeted ports.
                fw.apply(_script(rules, NORMAL, "test.wan_open"))
                assert fw.rule_counters() == {}

                def all_reached() -> bool:
                    return all(min(counts(h).values()) >= 1 for h in core_hosts)

                assert wait_for(all_reached, timeout=60)
            finally:
                cured = infect.cure(HOST)
        finally:
            fw.apply(_script(rules, NORMAL, "test.undo"))
    assert cured is True
    assert not daemons.is_running(proc)  # that PID, with that start time, is gone
    assert netns.pids(ns) == []
    assert infect.infected() == []
    state = LabState.load(build.DEFAULT_LAB)
    assert state is not None and _scanner_procs(state) == []
    assert not (state.dir / "scanners" / f"{ns}.ready").exists()
    assert infect.cure(HOST) is False  # curing twice changes nothing
    # nothing from the host any more (no process, so no socket to retransmit from)
    before = {h: counts(h) for h in core_hosts}
    time.sleep(1.0)
    assert {h: counts(h) for h in core_hosts} == before


@pytest.mark.twin
def test_rate_change_restarts_and_a_dead_scanner_is_replaced(twin: Twin) -> None:
    """Infecting at another rate replaces the scanner (still one); a scanner that died (killed
    behind the twin's back) is replaced by a new one on the next infect."""
    ns = twin.bp.host_ns[HOST]
    try:
        first = infect.infect(HOST, rate=5)
        first_proc = _recorded(first)
        second = infect.infect(HOST, rate=7)
        assert second != first
        assert not daemons.is_running(first_proc)
        assert netns.pids(ns) == [second]
        [sick] = infect.infected()
        assert sick.rate == 7 and sick.pid == second
        proc = _recorded(second)
        assert daemons.stop(proc)
        [dead] = infect.infected()
        assert dead.running is False
        third = infect.infect(HOST, rate=7)
        assert third not in (first, second) and netns.pids(ns) == [third]
    finally:
        infect.cure(HOST)
    assert netns.pids(ns) == []


@pytest.mark.twin
def test_refusals(twin: Twin) -> None:
    """Unknown hosts, core hosts and absurd rates are refused; nothing is started."""
    with pytest.raises(LabError, match="no twin host"):
        infect.infect("rennes-la-sagesse/admin/nobody")
    with pytest.raises(LabError, match="host of the core"):
        infect.infect("hgo-core/servers/dpi-central")
    for rate in (0, -1, 5000):
        with pytest.raises(LabError, match="rate"):
            infect.infect(HOST, rate=rate)
    assert infect.infected() == []
    assert netns.pids(twin.bp.host_ns[HOST]) == []


def _recorded(pid: int) -> daemons.DaemonProc:
    state = LabState.load(build.DEFAULT_LAB)
    assert state is not None
    [raw] = [p for p in _scanner_procs(state) if p["pid"] == pid]
    return daemons.DaemonProc.from_dict(raw)
