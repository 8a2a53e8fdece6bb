"""Reaching the active daemon (#16): two real `cordon daemon` processes (node-a, node-b) on one
real PostgreSQL state database (tests/pgserver.py), each serving its API over TCP with TLS and
client certificates (CORDON_API_LISTEN) in one private network namespace (only its loopback up:
no device is ever reached; the database is on a Unix socket), and the real CLI, in that
namespace too, pointed at the STANDBY (CORDON_API_URL, CORDON_API_PIN, a client certificate).

1. node-a active, node-b standby: `cordon run` sent to node-b lands on node-a (the standby's
   redirect, followed once; said on stderr); `cordon status` from node-b says it is a standby
   and which node is active; the address each node advertises is in `cordon_nodes`.
2. node-a killed (SIGKILL): node-b takes over; node-a restarted is a standby; the CLI pointed at
   node-a now lands on node-b (the approval of the same run, audited there, by its
   certificate's user). No twin."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agent import mtls
from agent.errors import ConfigError
from tests.conftest import require_root
from tests.daemon.test_daemon_cli import HOLD, OPEN, SITE_B, Daemon, show_until, wait_until
from tests.ha.test_failover import BOUND_S, STANDBY, Node
from tests.pgserver import PgServer

PORTS = {"node-a": 18601, "node-b": 18602}  # inside the private namespace: always free


@dataclass
class ReachNode(Node):
    pki: Path = Path()
    netns: str = ""  # /proc/<holder>/ns/net
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def url_(self) -> str:
        return f"https://127.0.0.1:{PORTS[self.node]}"

    def env(self, user: str | None = None) -> dict[str, str]:
        env = super().env(user)
        env.update(
            {
                "CORDON_API_LISTEN": f"127.0.0.1:{PORTS[self.node]}",
                "CORDON_API_TLS_CERT": str(self.pki / f"{self.node}.pem"),
                "CORDON_API_TLS_KEY": f"file:{self.pki / f'{self.node}.key'}",
                **self.extra,
            }
        )
        return env

    def start(self) -> Daemon:
        args = [
            "nsenter",
            f"--net={self.netns}",
            "--",
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
            "0",
        ]
        return Daemon(self, args)

    def cli_at(self, target: ReachNode, user: str, *args: str) -> subprocess.CompletedProcess[str]:
        """The real CLI in the namespace, pointed at `target`'s API over TCP as `user` (by the
        user's client certificate; no token)."""
        env = self.env()
        env.update(
            {
                "CORDON_API_URL": target.url_,
                "CORDON_API_PIN": mtls.certificate_pin(
                    self.pki / f"{target.node}.pem", error=ConfigError
                ),
                "CORDON_API_CLIENT_CERT": str(self.pki / f"{user}.pem"),
                "CORDON_API_CLIENT_KEY": f"file:{self.pki / f'{user}.key'}",
            }
        )
        return subprocess.run(
            ["nsenter", f"--net={self.netns}", "--", sys.executable, "-m", "agent", *args],
            cwd=self.cwd,
            env=env,
            input="",
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )


@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace with only its loopback up, held by a sleeping process (our own,
    stopped by its PID)."""
    require_root()
    holder = subprocess.Popen(
        ["unshare", "--net", "--", "sh", "-c", "ip link set lo up && exec sleep 3600"]
    )
    try:
        path = f"/proc/{holder.pid}/ns/net"
        up = wait_until(
            lambda: (
                subprocess.run(
                    ["nsenter", f"--net={path}", "--", "ip", "-o", "addr", "show", "lo"],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout.count("127.0.0.1")
                == 1
            ),
            timeout=30,
            step=0.1,
        )
        assert up, "the namespace's loopback did not come up"
        yield path
    finally:
        holder.kill()
        holder.wait(timeout=30)


@pytest.fixture
def reach(
    tmp_path: Path, pg_server: PgServer, netns: str
) -> Iterator[tuple[ReachNode, ReachNode, list[Daemon]]]:
    pki = tmp_path / "pki"
    pki.mkdir()
    for name in ("node-a", "node-b", "bob", "carol", "dave"):
        mtls.new_identity(pki / f"{name}.pem", pki / f"{name}.key", name, error=ConfigError)
    url = pg_server.database()
    a = ReachNode(tmp_path / "a", url=url, node="node-a", pki=pki, netns=netns)
    b = ReachNode(tmp_path / "b", url=url, node="node-b", pki=pki, netns=netns)
    b.tokens = a.tokens
    for n in (a, b):
        with n.roles.open("a") as fh:
            fh.write("certificates:\n")
            for user in ("bob", "carol", "dave"):
                fh.write(f"  {user}: {pki / f'{user}.pem'}\n")
    started: list[Daemon] = []
    try:
        started.append(a.start().ready())
        started.append(b.start().ready())
        yield a, b, started
    finally:
        for d in started:
            d.ensure_stopped()


def _api_rows(url: str) -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT node, role, api_url, api_pin FROM cordon_nodes").fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_cli_at_the_standby_reaches_the_active_node_and_follows_a_takeover(
    reach: tuple[ReachNode, ReachNode, list[Daemon]],
) -> None:
    a, b, started = reach
    da, db = started
    assert wait_until(lambda: a.cluster()["role"] == "active", timeout=60, step=0.1)
    assert b.cluster()["role"] == "standby"
    pin_a = mtls.certificate_pin(a.pki / "node-a.pem", error=ConfigError)
    rows = _api_rows(a.url)
    assert rows["node-a"][1:] == (a.url_, pin_a), rows
    assert rows["node-b"][1] == b.url_, rows

    # 1. an order sent to the standby lands on the active node
    done = b.cli_at(b, "bob", "run", HOLD, "-s", SITE_B, "--yes", "--detach", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"is a standby: the order was sent to the active node node-a at {a.url_}" in (
        done.stderr
    )
    run_id = json.loads(done.stdout)["run_id"]
    requested = [e for e in a.events("run.planned") if e.get("run_id") == run_id]
    assert requested, "node-a's audit has no record of the run"
    assert all(e.get("actor") == "bob" for e in requested)
    assert not [e for e in b.events("run.planned") if e.get("run_id") == run_id]
    # a read answered by the standby says so
    st = b.cli_at(b, "dave", "status")
    assert st.returncode == 0, st.stderr
    assert "answered by node node-b, a standby, from the shared state; the active node is " in (
        st.stderr
    )
    assert f"node-a ({a.url_})" in st.stderr
    # a refusal stays a refusal: dave (auditor) is refused at the active node, not redirected away
    refused = b.cli_at(b, "dave", "approve", run_id, "--reason", "no")
    assert refused.returncode == 13, refused.stderr

    # 2. takeover: node-a killed, node-b active; node-a back as a standby
    os.kill(da.pid, signal.SIGKILL)
    da.proc.wait(timeout=60)
    assert wait_until(lambda: b.cluster()["role"] == "active", timeout=60, step=0.1), db.log()
    started.append(a.start().ready())
    assert wait_until(lambda: a.cluster()["role"] == "standby", timeout=60, step=0.1)
    time.sleep(BOUND_S / 3)  # one heartbeat: node-a's row says standby again
    ok = a.cli_at(a, "carol", "approve", run_id, "--reason", "checked with bob")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"the order was sent to the active node node-b at {b.url_}" in ok.stderr
    approved = [e for e in b.events("run.approved") if e.get("run_id") == run_id]
    assert [(e["actor"], e.get("via")) for e in approved] == [("carol", "certificate")]
    final = show_until(b, run_id, lambda r: r["status"] not in OPEN, timeout=120)
    assert final["approval"]["actor"] == "carol"
    # a standby that cannot redirect (no client certificate: the socket, by token) says where
    late = a.cordon("rollback", run_id, "--reason", "x", user="bob")
    assert late.returncode == STANDBY, late.stderr
    assert b.url_ in late.stderr and "CORDON_API_CLIENT_CERT" in late.stderr
