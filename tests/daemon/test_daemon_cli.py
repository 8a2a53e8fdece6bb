"""`cordon daemon` as a real process driven through the real `cordon` CLI: identities by token
(alice on call, bob and carol operators, dave auditor; root has no role), refusals with their exit
codes and `access.refused` in the audit log, the two-person rule, bad requests changing nothing,
the daemon-down message and `--local`, and a clean stop on SIGTERM.

These tests need no twin: the daemon runs in a network namespace of its own with no interface up
(`unshare --net`), so whatever it tries to reach (its warm-up, a run's backup) fails at once and
nothing leaves the machine. That needs root.

Under `--state-backend=postgresql` each `Stack` has its state in a fresh database of the pass's
shared throwaway server (`CORDON_STATE_URL` for the daemon and every CLI), and its audit records
are the chain there (`agent.audit.source.ChainSource`), not the log directory's files."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.api.client import Client
from agent.audit.source import ChainSource
from agent.errors import AccessRefused, CordonError
from agent.inventory import load
from agent.platforms import registry
from tests import pgserver
from tests.conftest import EXAMPLE, ROOT, require_root

USERS = ("alice", "bob", "carol", "dave")
ROLES = """\
oncall: [alice]
operator: [bob, carol]
auditor: [dave]
tokens:
  alice: env:CORDON_T_ALICE
  bob: env:CORDON_T_BOB
  carol: env:CORDON_T_CAROL
  dave: env:CORDON_T_DAVE
"""
# root (the test process) has no role in this file: a command sent without a token is refused.

SITE_A = "nantes-jules-verne"
SITE_B = "bretagne-etab-3"
HOLD = "hold-two-person"  # preventive-degraded under the two-person rule, not an emergency

# exit codes (agent.errors, agent.status.RUN_EXIT)
INVALID, PLAN_REFUSED, DAEMON_ERROR, DOWN, REFUSED, APPROVAL = 2, 3, 11, 12, 13, 14


# -- a daemon and the CLI, as processes --------------------------------------------------------


@dataclass
class Stack:
    """A state directory, audit directory, roles file and playbooks for one daemon and its CLIs;
    `url`: their state database (`CORDON_STATE_URL`, the audit chain there too). None: a fresh
    database of the pass's server under `--state-backend=postgresql`, else the state
    directory's SQLite files; "": those files, whatever the pass (or a subclass sets it)."""

    base: Path
    inventory: Path = EXAMPLE
    isolate_net: bool = True  # the daemon in a network namespace of its own
    tokens: dict[str, str] = field(default_factory=dict)
    url: str | None = None

    def __post_init__(self) -> None:
        if self.url is None:
            self.url = pgserver.pass_database() or ""
        self.cwd = self.base / "work"
        self.state = self.base / "state"
        # under the session's log dir: the suite's secret scan reads it too
        self.logs = Path(os.environ["CORDON_LOG_DIR"]) / f"daemon-{secrets.token_hex(4)}"
        self.roles = self.base / "roles.yaml"
        (self.cwd / "playbooks").mkdir(parents=True)
        for pb in (ROOT / "playbooks").glob("*.yaml"):
            shutil.copy(pb, self.cwd / "playbooks" / pb.name)
        held = (ROOT / "playbooks" / "preventive-degraded.yaml").read_text()
        held = held.replace("name: preventive-degraded", f"name: {HOLD}")
        held = held.replace("emergency: true", "approval: two_person")
        (self.cwd / "playbooks" / f"{HOLD}.yaml").write_text(held)
        self.roles.write_text(ROLES)
        self.roles.chmod(0o644)
        self.tokens = {u: f"tok-{u}-{secrets.token_urlsafe(24)}" for u in USERS}

    def env(self, user: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORDON_")}
        env.update(
            {
                "CORDON_STATE_DIR": str(self.state),
                "CORDON_LOG_DIR": str(self.logs),
                "CORDON_INVENTORY": str(self.inventory),
                "CORDON_ROLES": str(self.roles),
                **{f"CORDON_T_{u.upper()}": t for u, t in self.tokens.items()},
            }
        )
        if self.url:
            env["CORDON_STATE_URL"] = self.url
        if user is not None:
            env["CORDON_TOKEN"] = self.tokens[user]
        return env

    def cordon(
        self, *args: str, user: str | None = None, stdin: str | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """The real console entry point, as `user` (by token; None: as root, without a role)."""
        return subprocess.run(
            [sys.executable, "-m", "agent", *args],
            cwd=self.cwd,
            env=self.env(user),
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok_json(self, *args: str, user: str) -> Any:
        done = self.cordon(*args, "--json", user=user)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)  # nothing but JSON on stdout

    def events(self, name: str) -> list[dict[str, Any]]:
        """The records of `name` in chain order, where the daemon and the CLIs write them: the
        chain in the state database, or the log directory's files."""
        if self.url:
            return [r for r in ChainSource(url=self.url).records() if r.get("event") == name]
        out = []
        for path in sorted(self.logs.glob("audit-*.jsonl")):
            for line in path.read_text().splitlines():
                record = json.loads(line)
                if record.get("event") == name:
                    out.append(record)
        return out

    def daemon(self, *extra: str, poll_interval: float = 0) -> Daemon:
        args = [
            sys.executable,
            "-m",
            "agent",
            "daemon",
            "--inventory",
            str(self.inventory),
            "--state-dir",
            str(self.state),
            "--roles",
            str(self.roles),
            "--poll-interval",
            str(poll_interval),
            *extra,
        ]
        if self.isolate_net:
            args = ["unshare", "--net", "--", *args]
        return Daemon(self, args)


class Daemon:
    """One `cordon daemon` process (unshare execs it: the PID is the daemon's)."""

    def __init__(self, stack: Stack, args: list[str]) -> None:
        self.stack = stack
        self.out = stack.base / f"daemon-{time.monotonic_ns()}.log"
        with self.out.open("w") as sink:
            self.proc = subprocess.Popen(
                args, cwd=stack.cwd, env=stack.env(), stdout=sink, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def socket(self) -> Path:
        return self.stack.state / "cordon.sock"

    def log(self) -> str:
        return self.out.read_text()

    def ready(self, timeout: float = 60) -> Daemon:
        """Wait until it answers on its socket and has written its PID (or fail with its log)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"cordon daemon exited {self.proc.returncode}:\n{self.log()}")
            state = _read_json(self.stack.state / "daemon.json")
            if state is not None and state.get("pid") == self.pid:
                try:
                    with Client(self.socket, token=self.stack.tokens["dave"]) as client:
                        if client.health().get("ok"):
                            return self
                except CordonError:
                    pass
            time.sleep(0.1)
        pytest.fail(f"cordon daemon not ready within {timeout} s:\n{self.log()}")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            os.kill(self.pid, sig)
        return self.proc.wait(timeout=timeout)

    def ensure_stopped(self) -> None:
        if self.proc.poll() is None:
            self.stop()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def wait_until(predicate: Any, timeout: float, step: float = 0.5) -> Any:
    """Poll until `predicate()` is truthy (returned) or the deadline passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(step)


OPEN = ("running", "awaiting_approval")


def show_until(s: Stack, run_id: str, done: Any, timeout: float) -> dict[str, Any]:
    """`cordon show RUN --json` until `done(run)` holds; fails with the last one seen."""
    last: dict[str, Any] = {}

    def check() -> bool:
        nonlocal last
        last = s.ok_json("show", run_id, user="dave")
        return bool(done(last))

    assert wait_until(check, timeout=timeout), last
    return last


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One daemon for the module's tests, stopped by PID afterwards."""
    require_root()  # unshare --net
    s = Stack(tmp_path_factory.mktemp("daemon-cli"))
    daemon = s.daemon().ready()
    try:
        yield s
    finally:
        daemon.ensure_stopped()


def snapshot(s: Stack) -> tuple[Any, Any]:
    """What a refused or bad request must not change: every site's state and every run."""
    status = s.ok_json("status", user="dave")
    status.pop("last_poll", None)
    cluster = status.get("cluster")  # with state on PostgreSQL: the nodes, less their clocks
    if cluster is not None:
        cluster.pop("lease_left_s", None)
        for node in cluster.get("nodes", ()):
            node.pop("seen_s_ago", None)
    return status, s.ok_json("runs", "--limit", "1000", user="dave")


# -- the tests ---------------------------------------------------------------------------------


def test_status_json_every_site_nothing_else_on_stdout(stack: Stack) -> None:
    """`status --json` is JSON only; every establishment is listed with its mode."""
    data = stack.ok_json("status", user="dave")
    sites = {s["site"]: s for s in data["sites"]}
    assert len(sites) == 9
    assert {SITE_A, SITE_B} <= set(sites)
    assert {"mode", "level", "since", "by", "run_id", "locked_by", "drift"} <= set(sites[SITE_A])
    assert {"open_runs", "drift_alarms", "incidents"} <= set(data)
    # the daemon's state is where the stack put it: its database (the lease shown), or files
    assert ("cluster" in data) == bool(stack.url)
    assert (stack.state / "journal.sqlite").exists() != bool(stack.url)
    text = stack.cordon("status", user="dave")
    assert text.returncode == 0, text.stderr
    assert SITE_A in text.stdout
    assert "\x1b[" not in text.stdout  # no colour into a pipe


def test_no_role_is_refused_and_audited(stack: Stack) -> None:
    """Without a token the caller is root, who has no role here: refused with 13, audited."""
    done = stack.cordon("status")
    assert done.returncode == REFUSED, done.stderr
    assert "no role" in done.stderr
    assert done.stdout == ""
    assert any(
        e["action"] == "status" and e["actor"] == "root" for e in stack.events("access.refused")
    )


def test_plan_commands_links_and_refusal(stack: Stack) -> None:
    """`plan` shows each device's commands and the links cut; an unsafe plan exits 3."""
    shown = stack.cordon("plan", "preventive-degraded", "--site", SITE_A, user="bob")
    assert shown.returncode == 0, shown.stderr
    # the firewall's own platform and rules method (a FortiGate in the example: fortios)
    found = load(stack.inventory).find_device("nts-fw1")
    assert found is not None
    fw_rules = registry.platform(str(found[1].platform)).rules
    assert fw_rules is not None
    assert f"nts-fw1 ({found[1].platform}, {fw_rules.method})" in shown.stdout
    assert "     + " in shown.stdout  # the commands
    assert "impact: 7 flows cut" in shown.stdout
    plan = stack.ok_json("plan", "preventive-degraded", "-s", SITE_A, user="alice")
    assert plan["sites"] == [SITE_A]
    assert len(plan["digest"]) == 32
    assert {(lk["kind"], lk["change"]) for lk in plan["links"]} == {
        ("internet", "cut"),
        ("remote_access", "cut"),
        ("vendor_maintenance", "cut"),
        ("wan", "cut"),
    }
    # a playbook parameter
    guest = stack.ok_json("plan", "segment", "-s", SITE_A, "--param", "zone=guest", user="bob")
    assert [fi["flow"] for fi in guest["impact"] if fi["change"] == "cut"] == ["nts-guest-internet"]
    # quarantining the lab would cut a must-survive flow: refused, exit 3, and said why
    lab = stack.cordon(
        "plan", "segment", "-s", "rennes-la-sagesse", "--param", "zone=lab", user="bob"
    )
    assert lab.returncode == PLAN_REFUSED, lab.stderr
    assert "REFUSED: would cut must-survive flow rns-lab-lis" in lab.stdout
    assert "plan refused" in lab.stderr


def test_auditor_cannot_run(stack: Stack) -> None:
    """dave (auditor) is refused a run with 13 (at its plan, the CLI's first request; and the
    run request itself, sent with a plan's digest); access.refused logged; nothing starts."""
    before = snapshot(stack)
    done = stack.cordon("run", "preventive-degraded", "-s", SITE_A, "--yes", user="dave")
    assert done.returncode == REFUSED, done.stdout + done.stderr
    assert "dave (auditor) may not plan" in done.stderr
    assert "started" not in done.stdout
    digest = stack.ok_json("plan", "preventive-degraded", "-s", SITE_A, user="bob")["digest"]
    client = Client(stack.state / "cordon.sock", token=stack.tokens["dave"])
    with client, pytest.raises(AccessRefused) as refused_run:
        client.run("preventive-degraded", digest=digest, sites=[SITE_A], reason="x")
    assert refused_run.value.exit_code == REFUSED
    assert "dave (auditor) may not run" in refused_run.value.message
    by_action = {e["action"]: e for e in stack.events("access.refused") if e["actor"] == "dave"}
    assert {"plan", "run"} <= set(by_action)
    assert by_action["run"]["role"] == "auditor"
    assert by_action["run"]["outcome"] == "refused"
    assert snapshot(stack) == before


def test_oncall_runs_only_emergency_playbooks_with_a_reason(stack: Stack) -> None:
    """alice (on call) is refused a run without --reason, and a non-emergency playbook."""
    before = snapshot(stack)
    bare = stack.cordon("run", "preventive-degraded", "-s", SITE_A, "--yes", user="alice")
    assert bare.returncode == REFUSED, bare.stderr
    assert "--reason" in bare.stderr
    other = stack.cordon("run", HOLD, "-s", SITE_A, "--yes", "--reason", "drill", user="alice")
    assert other.returncode == REFUSED, other.stderr
    assert "emergency playbooks only" in other.stderr
    assert snapshot(stack) == before


def test_two_person_rule(stack: Stack) -> None:
    """bob's two-person run waits; bob cannot approve it (14), dave may not (13); carol does
    and the daemon proceeds at once (here the device is out of reach: the backup fails and
    nothing is sent)."""
    started = stack.ok_json("run", HOLD, "-s", SITE_B, "--yes", "--detach", user="bob")
    run_id = started["run_id"]
    assert started["status"] == "awaiting_approval"
    assert started["actor"] == "bob"
    status = stack.ok_json("status", user="dave")
    assert [r["run_id"] for r in status["open_runs"]] == [run_id]
    assert next(s for s in status["sites"] if s["site"] == SITE_B)["locked_by"] == run_id

    own = stack.cordon("approve", run_id, user="bob")
    assert own.returncode == APPROVAL, own.stderr
    assert "cannot approve it (two-person rule)" in own.stderr
    auditor = stack.cordon("approve", run_id, user="dave")
    assert auditor.returncode == REFUSED, auditor.stderr
    refused = {(e["actor"], e["action"]) for e in stack.events("access.refused")}
    assert {("bob", "approve"), ("dave", "approve")} <= refused
    shown = stack.ok_json("show", run_id, user="dave")
    assert shown["status"] == "awaiting_approval"
    assert shown["approval"] is None
    assert {s["status"] for s in shown["steps"]} == {"pending"}

    approved = stack.cordon("approve", run_id, "--reason", "checked with bob", user="carol")
    assert approved.returncode == 0, approved.stderr
    assert f"run {run_id} approved by carol" in approved.stdout
    final = show_until(stack, run_id, lambda r: r["status"] not in OPEN, timeout=120)
    assert final["approval"]["actor"] == "carol"
    assert final["status"] == "failed"
    assert "backup failed, nothing sent" in final["detail"]
    assert {s["status"] for s in final["steps"]} == {"pending"}
    assert any(e.get("run_id") == run_id for e in stack.events("run.approved"))
    assert stack.ok_json("status", user="dave")["open_runs"] == []


def test_bad_requests_change_nothing(stack: Stack) -> None:
    """Unknown site, playbook or run, bad parameter or id: exit 2, an error on stderr only,
    nothing changed; the refused requests are audited."""
    before = snapshot(stack)
    refusals = len(stack.events("access.refused"))
    bad = [
        ("run", "preventive-degraded", "-s", "no-such-site", "--yes"),
        ("run", "no-such-playbook", "--yes"),
        ("run", "segment", "-s", SITE_A, "--param", "zone=bad zone", "--yes"),
        ("run", "preventive-degraded", "-s", SITE_A, "--soak-seconds", "-5", "--yes"),
        ("run", "preventive-degraded", "-s", SITE_A, "--attest", "no-equals-sign", "--yes"),
        ("plan", "segment", "-s", SITE_A),  # its parameter is missing
        ("approve", "20990101T000000Z-000000"),
        ("approve", "not a run id!"),
        ("attest", "20990101T000000Z-000000", SITE_A, "servers", "--reason", "clean"),
        ("rollback", "20990101T000000Z-000000"),
        ("show", "20990101T000000Z-000000"),
        ("incident", "close", "never-opened", "--reason", "over"),
    ]
    for args in bad:
        done = stack.cordon(*args, "--json", user="bob")
        assert done.returncode == INVALID, (args, done.stdout, done.stderr)
        assert "error:" in done.stderr or "Usage:" in done.stderr, (args, done.stderr)
        assert not done.stdout.strip(), (args, done.stdout)
    assert snapshot(stack) == before
    assert len(stack.events("access.refused")) > refusals


def test_incidents(stack: Stack) -> None:
    """An operator opens and closes an incident; status shows it while open; an auditor cannot."""
    refused = stack.cordon("incident", "open", "--reason", "ransomware", user="dave")
    assert refused.returncode == REFUSED
    opened = stack.ok_json(
        "incident",
        "open",
        "--name",
        "ransomware-rennes",
        "--site",
        "rennes-la-sagesse",
        "--reason",
        "ransomware note on the EHR servers",
        user="bob",
    )
    listed = stack.ok_json("status", user="dave")["incidents"]
    assert [i["incident_id"] for i in listed] == [opened["incident_id"]]
    text = stack.cordon("status", user="dave").stdout
    assert "ransomware-rennes at rennes-la-sagesse" in text
    closed = stack.cordon("incident", "close", "ransomware-rennes", "--reason", "over", user="bob")
    assert closed.returncode == 0, closed.stderr
    assert stack.ok_json("status", user="dave")["incidents"] == []
    assert [e["incident_id"] for e in stack.events("incident.declared")] == [opened["incident_id"]]


def test_local_is_refused_while_the_daemon_owns_the_state(stack: Stack) -> None:
    """Two engines must never drive the same runs: --local orders are refused (11)."""
    done = stack.cordon("incident", "open", "--reason", "test", "--local", user="bob")
    assert done.returncode == DAEMON_ERROR, done.stderr
    assert "a cordon daemon owns" in done.stderr
    assert "drop --local" in done.stderr
    # reading is harmless
    assert stack.cordon("status", "--local", "--json", user="dave").returncode == 0


def test_daemon_down_then_local(tmp_path: Path) -> None:
    """No daemon: the message says how to start it or use --local (exit 12); --local works,
    authorized by the same roles file (refusals audited) and audited the same way."""
    s = Stack(tmp_path)
    down = s.cordon("status", user="dave")
    assert down.returncode == DOWN
    assert "the daemon is not running" in down.stderr
    assert "cordon daemon" in down.stderr
    assert "--local" in down.stderr
    assert down.stdout == ""
    assert s.cordon("plan", "preventive-degraded", "--json", user="bob").returncode == DOWN

    status = s.ok_json("status", "--local", user="dave")
    assert len(status["sites"]) == 9
    plan = s.ok_json("plan", "preventive-degraded", "-s", SITE_A, "--local", user="bob")
    assert plan["digest"]
    # the same policy: an auditor may not run, locally either; and it is audited
    run = s.cordon("run", "preventive-degraded", "-s", SITE_A, "--yes", "--local", user="dave")
    assert run.returncode == REFUSED, run.stderr
    assert "dave (auditor) may not plan" in run.stderr
    assert any(e["actor"] == "dave" and e["action"] == "plan" for e in s.events("access.refused"))
    incident = s.ok_json(
        "incident", "open", "--name", "drill", "--reason", "tabletop", "--local", user="carol"
    )
    declared = s.events("incident.declared")
    assert [(e["incident_id"], e["actor"], e["role"]) for e in declared] == [
        (incident["incident_id"], "carol", "operator")
    ]
    # a local run has nobody to hand over to: --detach is refused before anything
    detach = s.cordon("run", "preventive-degraded", "--local", "--detach", "--yes", user="bob")
    assert detach.returncode == INVALID
    assert "--detach needs the daemon" in detach.stderr


def test_run_asks_first_and_a_no_sends_nothing(stack: Stack) -> None:
    """Without --yes the run repeats what it will cut and asks; answering no starts nothing."""
    before = snapshot(stack)
    done = stack.cordon(
        "run", "preventive-degraded", "-s", SITE_A, "--reason", "drill", user="alice", stdin="n\n"
    )
    assert done.returncode == 130
    assert "will change 2 device(s) on 1 site(s): nantes-jules-verne" in done.stdout
    assert "CUT      nantes-jules-verne  wan link wan (nts-fw1 wan0)" in done.stdout
    assert "7 flow(s) cut, 42 must-survive flow(s) kept open" in done.stdout
    assert "Go ahead?" in done.stdout
    assert "not started: nothing was sent" in done.stderr
    assert snapshot(stack) == before


def test_sigterm_stops_cleanly_and_one_daemon_per_state_dir(tmp_path: Path) -> None:
    """A second daemon on the same state directory is refused; SIGTERM stops the first with
    exit 0, its socket and PID file removed, daemon.started/daemon.stopped audited."""
    require_root()
    s = Stack(tmp_path)
    first = s.daemon().ready()
    try:
        state = _read_json(s.state / "daemon.json")
        assert state is not None
        assert state["pid"] == first.pid
        assert state["socket"] == str(first.socket)
        second = s.daemon("--socket", str(tmp_path / "other.sock"))
        assert second.proc.wait(timeout=60) == DAEMON_ERROR
        assert "already runs on" in second.log()
        assert first.socket.is_socket()
        assert first.stop(signal.SIGTERM) == 0
    finally:
        first.ensure_stopped()
    assert not first.socket.exists()
    assert not (s.state / "daemon.json").exists()
    started = [e for e in s.events("daemon.started") if e["pid"] == first.pid]
    stopped = [e for e in s.events("daemon.stopped") if e["pid"] == first.pid]
    assert len(started) == 1
    assert [e["signal"] for e in stopped] == ["SIGTERM"]
    assert stopped[0]["seq"] > started[0]["seq"]
    assert s.cordon("status", user="dave").returncode == DOWN
