"""The stormshield platform against its twin appliance, with real TCP: a site isolated through
the engine on a group whose firewalls are SNS appliances (tests/platforms/stormshield/data/
ght-armor.yaml): the zone cut closes its flow, must-survive flows never fail a probe, their
replies pass and the server side cannot open back; the read-back is exactly the plan's rules;
a second run sends nothing; the rollback restores the baseline. A wrong pin sends nothing, a
bad password is refused with the API's answer, the twin refuses what serverd refuses, an
interface disabled takes the link down, a counting rule counts.

Only one twin per machine: this module builds its own under the session lock and is marked
`twin_lifecycle`, so it runs (and takes its twin down) before the session's example twin."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.drivers.base import ChangeSet, Target
from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.engine.plan import plan
from agent.errors import AuthError, CertificateError, CommandRejected
from agent.lab import flows, netns
from agent.lab.probe import ContinuousProber, ProbeTarget, probe_tcp
from agent.network.state import DeviceState, NftRule
from agent.platforms.registry import one_shot
from agent.platforms.stormshield import render
from agent.platforms.stormshield.driver import StormshieldDriver
from agent.playbook import load as load_playbook
from agent.run.executor import Executor
from tests.conftest import ROOT, Twin, matrix, own_twin
from tests.lab.twinops import wait_for
from tests.platforms.precut import Held, banner_connection, delivered, held
from tests.run.test_crash_twin import statuses

pytestmark = [pytest.mark.twin, pytest.mark.twin_lifecycle]

ARMOR = Path(__file__).parent / "data" / "ght-armor.yaml"
FIXTURES = ROOT / "agent" / "platforms" / "stormshield" / "fixtures"
SITE = "clinique-bleue"


@pytest.fixture(scope="module")
def armor(twin_lock: None) -> Iterator[Twin]:
    with own_twin(ARMOR) as built:
        yield built


def api_log(twin: Twin, device: str) -> str:
    path = twin.state.dir / device / "sns-api.log"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def server_opens_back(twin: Twin) -> bool:
    """Can the EHR server open a connection to the central station (the reverse of a kept
    must-survive flow)?"""
    ns = twin.bp.host_ns["armor-dc/apps/ehr"]
    (r,) = probe_tcp([ProbeTarget(netns=ns, dst="198.18.93.11", port=2575)], timeout=1.0)
    return r.ok


@pytest.fixture
def engine(armor: Twin, tmp_path: Path) -> Iterator[Executor]:
    journal = Journal(tmp_path / "journal.sqlite")
    with Pool(armor.inv, keepalive=None) as pool:
        ex = Executor(
            armor.inv,
            journal,
            pool,
            actor="test",
            sources=[flows.TwinSource(armor.inv, armor.bp)],
        )
        try:
            yield ex
        finally:
            for run in journal.runs():
                ex.rollback(run.run_id)
    journal.close()


def test_isolate_site_on_stormshield_appliances(armor: Twin, engine: Executor) -> None:
    """isolate-site at the clinic: the admin zone is cut from the care zone, the WAN is cut
    except the must-survive flow to the EHR (never a failed probe; its replies pass by the
    appliance's connection state, the EHR cannot open back); the appliance holds exactly the
    plan's Cordon rules, first in its policy; a second run sends nothing; rollback restores."""
    original = matrix(armor)
    assert all(original.values()), original
    assert server_opens_back(armor)
    pb = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", armor.inv)
    predicted = {fi.flow: fi.after for fi in plan(pb, armor.inv, sites=[SITE]).impact}
    assert predicted["cb-admin-soins"] is False
    assert predicted["cb-soins-ehr"] is True
    must = [t for f, t in flows.targets(armor.inv, armor.bp) if f.must_survive]
    with ContinuousProber(must, interval=0.2) as prober:
        report = engine.run(pb, [SITE])
        stats = prober.stop()
    assert report.status == "done", report
    assert {t for t, s in stats.items() if s.sent} == set(must)
    assert sum(s.failed for s in stats.values()) == 0
    assert wait_for(lambda: matrix(armor) == predicted, timeout=10)
    assert not server_opens_back(armor)
    # read-back: exactly the journal's rules, first in the active policy
    recorded = engine.journal.device_states()["cb-sns"]
    drv = StormshieldDriver(Target.of(armor.inv, "cb-sns"))
    try:
        comments = drv.rule_comments()
        rules = drv.policy("test")
    finally:
        drv.close()
    assert comments is not None
    assert sorted(comments) == sorted(render.comments(recorded))
    assert [r.ours for r in rules] == [True] * len(comments) + [False] * (
        len(rules) - len(comments)
    )
    again = engine.run(pb, [SITE])
    assert again.status == "done", again
    assert again.outcomes == []
    assert engine.rollback(report.run_id).status == "rolled_back"
    assert wait_for(lambda: matrix(armor) == original, timeout=10)
    assert server_opens_back(armor)
    with one_shot(Target.of(armor.inv, "cb-sns")) as d:
        assert d.facts().ours == ""


def test_wrong_pin_sends_nothing(armor: Twin, tmp_path: Path) -> None:
    """A certificate other than the pinned one: CertificateError before any request."""
    pins = tmp_path / "pins"
    pins.write_text("cb-sns sha256:" + "0" * 64 + "\n")
    target = dataclasses.replace(Target.of(armor.inv, "cb-sns"), tls_pins=pins)
    before = api_log(armor, "cb-sns").count("request ")
    drv = StormshieldDriver(target)
    with pytest.raises(CertificateError):
        drv.connect()
    drv.close()
    assert api_log(armor, "cb-sns").count("request ") == before  # not one HTTP request


def test_bad_password_refused_by_the_api(armor: Twin, tmp_path: Path) -> None:
    """A wrong password: the appliance answers AUTH_FAILED, the driver raises AuthError."""
    wrong = tmp_path / "pw"
    wrong.write_text("not-the-password\n")
    os.chmod(wrong, 0o600)
    base = Target.of(armor.inv, "cb-sns")
    https = base.device.https
    assert https is not None
    device = base.device.model_copy(
        update={"https": https.model_copy(update={"password": f"file:{wrong}"})}
    )
    drv = StormshieldDriver(dataclasses.replace(base, device=device))
    with pytest.raises(AuthError, match="AUTH_FAILED"):
        drv.connect()
    drv.close()
    assert "authentication failed" in api_log(armor, "cb-sns")


def test_the_twin_refuses_what_serverd_refuses(armor: Twin) -> None:
    """An unknown command and a rule naming an unknown object: serverd's error answers
    (the shapes of the fixtures), nothing changes on the appliance."""
    drv = StormshieldDriver(Target.of(armor.inv, "cb-sns"))
    try:
        drv.connect()
        with pytest.raises(CommandRejected, match='200 code=00100100 msg="Unknown command"'):
            drv._cmd("CONFIG FILTER FROBNICATE", "test")
        before = drv.policy("test")
        with pytest.raises(CommandRejected, match='200 code=00100800 msg="Error in format"'):
            drv._cmd(
                "CONFIG FILTER RULE INSERT index=5 type=filter state=on action=block "
                'srctarget=no_such_host dsttarget=any comment="cordon x #1"',
                "test",
            )
        with pytest.raises(CommandRejected, match="Error in format"):
            drv._cmd('CONFIG FILTER RULE INSERT index=5 type=filter comment="broken', "test")
        drv._cmd("CONFIG FILTER ACTIVATE", "test")
        assert drv.policy("test") == before
    finally:
        drv.close()


def test_interface_disabled_takes_the_link_down(armor: Twin) -> None:
    """CONFIG NETWORK INTERFACE UPDATE state=0 + activate: the kernel link goes down, the
    appliance reports it disabled; state=1 brings it back."""
    ns = armor.bp.device_ns["cb-sns"]

    def up() -> bool:
        out = netns.run(["ip", "-o", "link", "show", "out"], netns=ns).stdout
        return "UP" in out.split("<", 1)[1].split(">", 1)[0].split(",")

    drv = StormshieldDriver(Target.of(armor.inv, "cb-sns"))
    try:
        drv.set_interface("out", up=False)
        assert not up()
        assert matrix(armor)["cb-admin-internet"] is False
        iface = drv.facts().interface("out")
        assert iface is not None and iface.admin_up is False
        drv.set_interface("out", up=True)
        assert up()
        assert wait_for(lambda: matrix(armor)["cb-admin-internet"], timeout=10)
    finally:
        drv.close()


def test_a_counting_rule_counts_new_connections(armor: Twin) -> None:
    """A `count` rule (action=log count=on) counts the connections that reach it and lets
    them through; MONITOR FILTER reads its hits by comment; removing it leaves no rule."""
    count = NftRule("count", iif="lan1.120", oif="out", tag="soak admin")
    state = DeviceState(rules=frozenset([count]))
    drv = StormshieldDriver(Target.of(armor.inv, "cb-sns"))
    try:
        drv.apply(ChangeSet(tuple(render.script(state).splitlines())))
        start = drv.rule_counters()[render.counted_as(count)]
        for _ in range(3):
            assert matrix(armor)["cb-admin-internet"]
        assert drv.rule_counters()[render.counted_as(count)] >= start + 3
        drv.apply(ChangeSet(tuple(render.script(DeviceState()).splitlines())))
        assert drv.rule_comments() is None
    finally:
        drv.close()


def test_sigkill_then_resume_records_the_true_state(armor: Twin, tmp_path: Path) -> None:
    """`cordon run` killed with SIGKILL after its first verified step: `cordon resume` reads
    the appliances, settles the steps in flight from what they show, and finishes the run; the
    twin then shows the planned matrix; rollback restores the baseline."""
    env = {
        **os.environ,
        "CORDON_STATE_DIR": str(tmp_path),
        "CORDON_INVENTORY": str(ARMOR),
        "CORDON_STEP_PAUSE": "0.7",
    }
    db = tmp_path / "journal.sqlite"
    args = [sys.executable, "-m", "agent", "run", "isolate-site", "--yes", "--json", "--local"]
    args += ["--sites", SITE]
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert wait_for(lambda: db.exists() and "verified" in statuses(db), timeout=60)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    with sqlite3.connect(db) as conn:
        (run_id,) = [r[0] for r in conn.execute("SELECT run_id FROM runs")]

    def cordon(*a: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agent", *a],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    try:
        assert "pending" in statuses(db) or "in_flight" in statuses(db)
        done = cordon("resume", run_id)
        assert done.returncode == 0, done.stdout + done.stderr
        journal = Journal(db)
        assert journal.run(run_id).status == "done"
        assert {r.status for r in journal.steps(run_id)} == {"verified"}
        recorded = journal.device_states().get("cb-sns", DeviceState())
        journal.close()
        drv = StormshieldDriver(Target.of(armor.inv, "cb-sns"))
        try:
            assert sorted(drv.rule_comments() or ()) == sorted(render.comments(recorded))
        finally:
            drv.close()
        pb = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", armor.inv)
        predicted = {fi.flow: fi.after for fi in plan(pb, armor.inv, sites=[SITE]).impact}
        assert wait_for(lambda: matrix(armor) == predicted, timeout=10)
    finally:
        back = cordon("rollback", run_id, "--local")
    assert back.returncode == 0, back.stdout + back.stderr
    assert wait_for(lambda: all(matrix(armor).values()), timeout=15)


# -- connections opened before a cut ---------------------------------------------------------------


def test_a_cut_stops_the_connections_opened_before_it(armor: Twin, engine: Executor) -> None:
    """Connections open before isolate-site: the admin PC's to the EHR (no exception keeps it)
    stops carrying data once cb-sns flushed its states; the central station's to the EHR's
    https (the must-survive flow, on its own port) goes on through the cut and its rollback.
    The flushes are commands of the changes, one host each, never a must-survive end of the
    policy being activated."""
    ehr = "198.18.92.20"
    kept = banner_connection(armor, "clinique-bleue/soins/centrale", ehr, 443)
    try:
        with held(armor, "clinique-bleue/admin/pc-admin", "armor-dc/apps/ehr", ehr, 47201) as cut:
            assert cut.carries(b"before") and delivered(kept, b"before\n")
            pb = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", armor.inv)
            report = engine.run(pb, [SITE])
            assert report.status == "done", report
            assert delivered(kept, b"after the cut\n")
            assert not cut.carries(b"after the cut")
            log = api_log(armor, "cb-sns")
            assert "command MONITOR CONNECTION" in log  # read once a cut is active
            assert "command MONITOR FLUSH STATE 198.18.94.20" in log
            assert flush_commands(log) < admin_hosts(armor)  # only the hosts holding states
            assert engine.rollback(report.run_id).status == "rolled_back"
            assert delivered(kept, b"after the rollback\n")
    finally:
        kept.close()
    assert wait_for(lambda: all(matrix(armor).values()), timeout=15)


def flush_commands(log: str) -> int:
    return sum("command MONITOR FLUSH STATE " in ln for ln in log.splitlines())


def admin_hosts(twin: Twin) -> int:
    """The addresses of the clinic's admin subnet (every one a cut of it wants flushed)."""
    zone = next(z for s in twin.inv.sites for z in s.zones if s.name == SITE and z.name == "admin")
    return len(list(zone.subnet.hosts()))


def test_a_host_no_inventory_names_holding_a_state_is_cut(armor: Twin, engine: Executor) -> None:
    """A connection from an address of the admin subnet that no host or flow of the inventory
    names (a second address on the admin PC's port), open before isolate-site: cb-sns lists it
    in its connection table after the cut, flushes that address and the connection stops."""
    stranger, ehr = "198.18.94.77", "198.18.92.20"
    ns = armor.bp.host_ns["clinique-bleue/admin/pc-admin"]
    dev = next(
        ln.split()[1]
        for ln in netns.run(["ip", "-o", "-4", "addr", "show"], netns=ns).stdout.splitlines()
        if " 198.18.94.20/" in ln
    )
    with netns.inside(armor.bp.host_ns["armor-dc/apps/ehr"]):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with netns.inside(ns):
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    netns.run(["ip", "addr", "add", f"{stranger}/32", "dev", dev], netns=ns)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((ehr, 47204))
        listener.listen(1)
        client.bind((stranger, 0))
        client.settimeout(5.0)
        client.connect((ehr, 47204))
        listener.settimeout(5.0)
        served, _ = listener.accept()
        c = Held(client, served)
        try:
            assert c.carries(b"before")
            pb = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", armor.inv)
            report = engine.run(pb, [SITE])
            assert report.status == "done", report
            assert not c.carries(b"after the cut")
            log = api_log(armor, "cb-sns")
            assert f"command MONITOR FLUSH STATE {stranger}" in log
            assert flush_commands(log) < admin_hosts(armor)
            assert engine.rollback(report.run_id).status == "rolled_back"
        finally:
            served.close()
    finally:
        client.close()
        listener.close()
        netns.run(["ip", "addr", "del", f"{stranger}/32", "dev", dev], netns=ns, check=False)
    assert wait_for(lambda: all(matrix(armor).values()), timeout=15)


def test_the_flush_is_a_journaled_command_of_the_change(armor: Twin) -> None:
    """A cut naming one host, by the driver: the host's open connection stops, the change's
    commands (what the journal and audit record) end with its flush; removing the cut flushes
    nothing. A malformed flush is serverd's format error."""
    pc = "198.18.94.20"
    web = "198.18.95.10"
    cut = NftRule("drop", saddr=pc, tag="quarantine pc-admin")
    drv = StormshieldDriver(Target.of(armor.inv, "cb-sns"))
    try:
        with held(armor, "clinique-bleue/admin/pc-admin", "internet/public/web", web, 47203) as c:
            assert c.carries(b"before")
            done = drv.apply(
                ChangeSet(tuple(render.script(DeviceState(rules=frozenset([cut]))).splitlines()))
            )
            assert done.commands[-1] == f"MONITOR FLUSH STATE {pc}"
            assert sum(x.startswith("MONITOR FLUSH STATE") for x in done.commands) == 1
            assert "flushed for 1 host" in done.output
            assert not c.carries(b"after")
            back = drv.apply(ChangeSet(tuple(render.script(DeviceState()).splitlines())))
            assert not any(x.startswith("MONITOR FLUSH STATE") for x in back.commands)
        with pytest.raises(CommandRejected, match="Error in format"):
            drv._cmd(f"MONITOR FLUSH STATE {pc};CONFIG FILTER ACTIVATE", "test")
    finally:
        drv.close()
    assert wait_for(lambda: all(matrix(armor).values()), timeout=15)
