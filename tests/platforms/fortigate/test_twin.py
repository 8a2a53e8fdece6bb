"""The fortigate platform on its twin (tests/platforms/fortigate/data/fortigate-small.yaml: a
clinic behind a FortiGate whose emulated REST API turns its policies into the namespace's own
nftables), with real TCP: a zone block stops a flow while the must-survive flow keeps working
(the server side cannot open a connection back), the read-back is exact, a second run sends
nothing, the rollback restores the baseline; a cut WAN also closes the firewall's own address to
the WAN side (local-in policies) and its undo reopens it; a change sends only what differs
(one move per misplaced policy at most); the reconnect playbook's counted catch-all feeds the
soak, which catches an infected zone; FortiOS's revert mode really reverts an unconfirmed change
and keeps a confirmed one; a wrong certificate pin or a wrong token sends nothing."""

from __future__ import annotations

import dataclasses
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.drivers.base import ChangeSet, Target
from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.errors import AuthError, CertificateError
from agent.lab import netns
from agent.lab.infect import cure, infect
from agent.lab.probe import ProbeTarget, probe_tcp
from agent.network.state import NORMAL, DeviceState, NftRule
from agent.platforms.fortigate import render
from agent.platforms.fortigate.driver import FortiGateDriver
from agent.playbook import load as load_playbook
from agent.run.executor import Executor
from agent.run.model import RunOptions
from tests.conftest import ROOT, Twin, matrix, own_twin
from tests.lab.twinops import wait_for

pytestmark = [pytest.mark.twin, pytest.mark.twin_lifecycle]

INV = Path(__file__).parent / "data" / "fortigate-small.yaml"
SITE = "fg-clinique"


@pytest.fixture(scope="module")
def fg(twin_lock: None) -> Iterator[Twin]:
    with own_twin(INV) as built:
        yield built


def driver(twin: Twin) -> FortiGateDriver:
    return FortiGateDriver(Target.of(twin.inv, "fg-fw"))


def api_log(twin: Twin) -> str:
    return (twin.state.dir / "fg-fw" / "fortios-api.out").read_text(errors="replace")


def test_block_keeps_must_survive_and_rolls_back(fg: Twin, tmp_path: Path) -> None:
    original = matrix(fg)
    assert original == {"scope-hl7": True, "srv-scope-web": True, "pc-ehr": True}
    journal = Journal(tmp_path / "journal.sqlite")
    with Pool(fg.inv, keepalive=None) as pool:
        ex = Executor(fg.inv, journal, pool, actor="test")
        pb = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", fg.inv, {})
        report = ex.run(pb, [SITE])
        assert report.status == "done", report
        # the monitor reaches the HL7 server (replies by the session table); the server cannot
        # open a connection to the monitor; the WAN is cut
        assert wait_for(
            lambda: matrix(fg) == {"scope-hl7": True, "srv-scope-web": False, "pc-ehr": False},
            timeout=10,
        )
        recorded = journal.device_states()["fg-fw"]
        d = driver(fg)
        try:
            assert set(d.rule_comments() or ()) == render.comments(recorded)
        finally:
            d.close()
        again = ex.run(pb, [SITE])
        assert again.status == "done" and again.outcomes == []
        assert ex.rollback(report.run_id).status == "rolled_back"
        assert wait_for(lambda: matrix(fg) == original, timeout=10)
        d = driver(fg)
        try:
            assert d.rule_comments() is None  # no cordon- object left; the site policy works
        finally:
            d.close()
    journal.close()


def _block(twin: Twin) -> DeviceState:
    return DeviceState(
        rules=frozenset(
            {NftRule("drop", iif="wan1", tag="test"), NftRule("drop", oif="wan1", tag="test")}
        )
    )


def test_revert_mode_reverts_an_unconfirmed_change(fg: Twin) -> None:
    d = driver(fg)
    try:
        d.arm_revert(ChangeSet(tuple(render.script(NORMAL).splitlines())), 10)
        d.apply(ChangeSet(tuple(render.script(_block(fg)).splitlines())))
        assert wait_for(lambda: not matrix(fg)["pc-ehr"], timeout=5)
    finally:
        d.close()  # the agent is gone: nobody confirms
    fresh = driver(fg)
    try:
        assert wait_for(lambda: fresh.rule_comments() is None, timeout=30)
        assert matrix(fg)["pc-ehr"]
        assert "Configuration reverted due to timeout" in api_log(fg)
    finally:
        fresh.close()


def test_revert_mode_keeps_a_confirmed_change(fg: Twin) -> None:
    d = driver(fg)
    try:
        token = d.arm_revert(ChangeSet(tuple(render.script(NORMAL).splitlines())), 10)
        d.apply(ChangeSet(tuple(render.script(_block(fg)).splitlines())))
        assert d.confirm(token)
        time.sleep(12)  # past the revert timeout: nothing may revert now
        assert set(d.rule_comments() or ()) == render.comments(_block(fg))
        assert not matrix(fg)["pc-ehr"]
        d.apply(ChangeSet(tuple(render.script(NORMAL).splitlines())))
        assert d.rule_comments() is None
        assert wait_for(lambda: matrix(fg)["pc-ehr"], timeout=5)
    finally:
        d.close()


def test_wrong_pin_sends_nothing(fg: Twin, tmp_path: Path) -> None:
    pins = tmp_path / "pins"
    pins.write_text("fg-fw sha256:" + "0" * 64 + "\n")
    target = dataclasses.replace(Target.of(fg.inv, "fg-fw"), tls_pins=pins)
    before = api_log(fg)
    d = FortiGateDriver(target)
    with pytest.raises(CertificateError):
        d.ping()
    assert api_log(fg) == before


def test_wrong_token_is_an_auth_error(fg: Twin, tmp_path: Path) -> None:
    bad = tmp_path / "token"
    bad.write_text("not-the-token-at-all")
    bad.chmod(0o600)
    real = Target.of(fg.inv, "fg-fw")
    assert real.device.https is not None
    https = real.device.https.model_copy(update={"token": f"file:{bad}"})
    device = real.device.model_copy(update={"https": https})
    d = FortiGateDriver(dataclasses.replace(real, device=device))
    with pytest.raises(AuthError) as err:
        d.ping()
    assert "401" in str(err.value) and "not-the-token" not in str(err.value)
    d.close()


FW_WAN, PORT = "198.18.91.1", 7070  # fg-fw's own WAN address; a port this test listens on


@pytest.fixture
def listener(fg: Twin) -> Iterator[None]:
    """A TCP listener on every address of the FortiGate's namespace (the firewall's own
    service), accepting and closing, for the test's duration."""
    sock = netns.socket_in(fg.bp.device_ns["fg-fw"])
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", PORT))
    sock.listen(64)
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2)
        sock.close()


def reaches_firewall(twin: Twin, ns: str, address: str) -> bool:
    return probe_tcp([ProbeTarget(ns, address, PORT)], timeout=1.0)[0].ok


def test_cut_wan_closes_the_firewall_itself_and_undo_reopens(fg: Twin, listener: None) -> None:
    wan_side = fg.bp.device_ns["dc-fw"]  # the core's firewall, across the WAN link
    pc = fg.bp.host_ns["fg-clinique/admin/pc"]
    assert reaches_firewall(fg, wan_side, FW_WAN)
    assert reaches_firewall(fg, pc, "198.18.93.1")
    cut = _block(fg)
    d = driver(fg)
    try:
        d.apply(ChangeSet(tuple(render.script(cut).splitlines())))
        shown = set(d.rule_comments() or ())
        assert shown == render.comments(cut)
        assert any(line.startswith("local-in 1 cordon-") for line in shown)
        # a new connection from the WAN side to the firewall's own address dies there; the
        # clinic's LAN still reaches its gateway (the local-in policy names the WAN only)
        assert wait_for(lambda: not reaches_firewall(fg, wan_side, FW_WAN), timeout=5)
        assert reaches_firewall(fg, pc, "198.18.93.1")
        d.apply(ChangeSet(tuple(render.script(NORMAL).splitlines())))
        assert d.rule_comments() is None
        assert wait_for(lambda: reaches_firewall(fg, wan_side, FW_WAN), timeout=5)
    finally:
        d.close()


_WRITE = re.compile(r"^(POST|PUT|DELETE) /api/v2/cmdb/(\S+) -> 200$", re.MULTILINE)


def _writes_since(twin: Twin, mark: int) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in _WRITE.finditer(api_log(twin)[mark:])]


def test_a_change_sends_only_what_differs(fg: Twin) -> None:
    """From the WAN cut to the block with its flow accepts: every object created once, each
    new policy moved once at most, the ones kept not touched; applying it again writes
    nothing; a site policy put ahead of Cordon's is seen by the read-back and fixed with one
    move per policy of ours it displaced."""
    block = DeviceState(
        rules=_block(fg).rules
        | {
            NftRule("drop", "lan0.20", "lan0.30", tag="t"),
            NftRule("drop", "lan0.30", "lan0.20", tag="t"),
            NftRule("accept", "lan0.20", "lan0.30", "198.18.92.10", "198.18.93.10", None, 2575),
        }
    )
    d = driver(fg)
    try:
        d.apply(ChangeSet(tuple(render.script(_block(fg)).splitlines())))
        mark = len(api_log(fg))
        d.apply(ChangeSet(tuple(render.script(block).splitlines())))
        writes = _writes_since(fg, mark)
        new = len(render.policies(block)) - len(render.policies(_block(fg)))
        posts = [p for m, p in writes if m == "POST" and p == "firewall/policy"]
        moved = [p for m, p in writes if m == "PUT" and p.startswith("firewall/policy/")]
        assert len(posts) == new
        assert len(moved) <= new
        assert not [w for w in writes if w[0] == "DELETE"]
        assert set(d.rule_comments() or ()) == render.comments(block)

        mark = len(api_log(fg))
        d.apply(ChangeSet(tuple(render.script(block).splitlines())))
        assert _writes_since(fg, mark) == []

        # the site's policy moved ahead of ours (by hand on the device): shown, then fixed
        first = next(r for r in d._results("cmdb/firewall/policy", "t"))
        d._call(
            "PUT",
            "cmdb/firewall/policy/1000",
            operation="t",
            query={"action": "move", "before": str(first["policyid"])},
        )
        assert set(d.rule_comments() or ()) != render.comments(block)
        mark = len(api_log(fg))
        d.apply(ChangeSet(tuple(render.script(block).splitlines())))
        assert len(_writes_since(fg, mark)) <= len(render.policies(block))
        assert set(d.rule_comments() or ()) == render.comments(block)
        d.apply(ChangeSet(tuple(render.script(NORMAL).splitlines())))
        assert d.rule_comments() is None
    finally:
        d.close()


def test_reconnect_soak_sees_new_connections_through_the_policy_counters(
    fg: Twin, tmp_path: Path
) -> None:
    """Through the engine: the clinic isolated, then reconnected zone by zone with the
    playbook's counted catch-all as FortiGate policies; the infected admin PC scans the core as
    soon as its zone is reconnected, the soak reads the policies' hit counts (rule_counters)
    and re-isolates that zone alone."""
    journal = Journal(tmp_path / "journal.sqlite")
    with Pool(fg.inv, keepalive=None) as pool:
        ex = Executor(fg.inv, journal, pool, actor="test")
        try:
            isolate = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", fg.inv)
            assert ex.run(isolate, [SITE]).status == "done"
            infect(f"{SITE}/admin/pc", rate=20.0)
            reconnect = load_playbook(ROOT / "playbooks" / "reconnect.yaml", fg.inv)
            attest = {"soins": "clean", "admin": "clean"}
            report = ex.run(
                reconnect, [SITE], options=RunOptions(soak_seconds=3.0, attest=attest), poll=0.2
            )
            assert report.status == "reisolated", report
            gates = {g.step: g for g in journal.gates(report.run_id)}
            assert gates["soak-life-critical"].status == "passed"
            caught = gates["soak-admin"]
            assert caught.status == "reisolated", caught
            assert "zone admin" in str(caught.detail["reason"])
            assert "new connections toward the core" in str(caught.detail["reason"])
            assert caught.detail["reisolated"] == ["admin"]
            # the soak's samples were the FortiGate's hit counts under the count rule's key
            sample = gates["soak-life-critical"].detail["sample"]
            keys = set(sample["counters"]["fg-fw"])
            assert keys and all(k.startswith(render.PREFIX) for k in keys)
            assert not matrix(fg)["pc-ehr"]  # admin cut from the core again
        finally:
            cure(f"{SITE}/admin/pc")
            for run in journal.runs():
                ex.rollback(run.run_id)
    journal.close()


def test_merged_denies_cut_as_the_unmerged_ones_and_are_replaced_before_deleted(
    fg: Twin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neighbouring denies merged into one list policy (`render.merge`) cut, in real TCP on the
    twin (which evaluates FortiOS lists itself), exactly what the same rules one policy each cut;
    when the merged deny's members change, its successor is created and moved above it before
    it is deleted; the read-back is exact at each step."""
    one = DeviceState(
        rules=frozenset({NftRule("drop", oif="wan1"), NftRule("drop", oif="lan0.30")})
    )
    two = DeviceState(rules=one.rules | {NftRule("drop", oif="lan0.20")})
    assert len(render.policies(one)) == 1 and "," in render.policies(one)[0].dstintf
    original = matrix(fg)
    d = driver(fg)
    try:
        seen = {}
        for merged in (True, False):
            with monkeypatch.context() as m:
                if not merged:
                    m.setattr(render, "merge", lambda pols: pols)
                d.apply(ChangeSet(tuple(render.script(one).splitlines())))
                assert set(d.rule_comments() or ()) == render.comments(one)
                assert wait_for(lambda: matrix(fg) != original, timeout=5)
                seen[merged] = matrix(fg)
            d.apply(ChangeSet(tuple(render.script(NORMAL).splitlines())))
        assert seen[True] == seen[False] != original
        d.apply(ChangeSet(tuple(render.script(one).splitlines())))
        mark = len(api_log(fg))
        d.apply(ChangeSet(tuple(render.script(two).splitlines())))
        writes = [m for m, p in _writes_since(fg, mark) if p.startswith("firewall/policy")]
        assert writes == ["POST", "DELETE"] or writes == ["POST", "PUT", "DELETE"], writes
        assert set(d.rule_comments() or ()) == render.comments(two)
        assert wait_for(lambda: not any(matrix(fg).values()), timeout=5)
        d.apply(ChangeSet(tuple(render.script(NORMAL).splitlines())))
        assert wait_for(lambda: matrix(fg) == original, timeout=10)
    finally:
        d.close()


def test_a_client_stalled_in_its_handshake_holds_up_no_other(fg: Twin) -> None:
    """The twin takes each connection's TLS handshake in that connection's own thread, as a
    FortiGate serves several REST sessions at once: a client that opened a TCP connection and
    sent nothing (no ClientHello) does not stop the driver's connections being answered."""
    target = Target.of(fg.inv, "fg-fw")
    assert target.device.https is not None
    address, port = target.device.management.address, target.device.https.port
    with socket.create_connection((str(address), port), timeout=60):  # no handshake started
        d = driver(fg)
        try:
            assert {i.name for i in d.interfaces()} >= {"port1"}
        finally:
            d.close()
