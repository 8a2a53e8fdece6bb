"""Two real `cordon daemon` processes sharing one PostgreSQL state database (the real throwaway
cluster, tests/pgserver.py), each with its own state directory and audit log, each in a network
namespace of its own with no interface up (`unshare --net`: no device is ever reached; the
database is on a Unix socket). No twin. Their audit records go to the group's one chain in that
database (`agent.audit.pgchain`): a node's events are the records it wrote there.

The classic fencing case: node-a is active with an open run (a two-person run awaiting
approval); it is frozen (SIGSTOP) past the failover bound; node-b takes the lease (epoch 2) and
the run; node-a is resumed (SIGCONT): it sends nothing, steps down and says so, and refuses
orders naming node-b. The run is then approved through node-b, which drives it to its end."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.audit.pgchain import read_records
from tests.conftest import require_root
from tests.daemon.test_daemon_cli import HOLD, OPEN, SITE_B, Daemon, Stack, show_until, wait_until
from tests.pgserver import PgServer

BOUND_S = 3.0  # CORDON_FAILOVER_S: lease 2 s, renewed every 1 s
STANDBY = 25  # agent.errors.StandbyError's exit code
SENDING = ("step.started", "device.change", "run.rollback", "drift.reapplied")


@dataclass
class Node(Stack):
    url: str = ""
    node: str = ""

    def env(self, user: str | None = None) -> dict[str, str]:
        env = super().env(user)
        env.update(
            {
                "CORDON_STATE_URL": self.url,
                "CORDON_NODE_ID": self.node,
                "CORDON_FAILOVER_S": str(BOUND_S),
            }
        )
        return env

    def events(self, name: str) -> list[dict[str, Any]]:
        """This node's records of `name` in the group's one chain (in the state database)."""
        return [
            r
            for r in read_records(self.url)
            if r.get("event") == name and r.get("writer") == self.node
        ]

    def cluster(self) -> dict[str, Any]:
        return dict(self.ok_json("status", user="dave")["cluster"])

    def events_after(self, t: float, names: tuple[str, ...]) -> list[dict[str, Any]]:
        return [e for n in names for e in self.events(n) if _at(e) >= t]


def _at(event: dict[str, Any]) -> float:
    from datetime import datetime  # noqa: PLC0415

    return datetime.fromisoformat(str(event["ts"])).timestamp()


@pytest.fixture
def pair(tmp_path: Path, pg_server: PgServer) -> Iterator[tuple[Node, Node, Daemon, Daemon]]:
    require_root()  # unshare --net
    url = pg_server.database()
    a = Node(tmp_path / "a", url=url, node="node-a")
    b = Node(tmp_path / "b", url=url, node="node-b")
    b.tokens = a.tokens  # the same people on both nodes
    da = a.daemon().ready()
    db = None
    try:
        db = b.daemon().ready()
        yield a, b, da, db
    finally:
        for d in (da, db):
            if d is not None:
                if d.proc.poll() is None:
                    os.kill(d.pid, signal.SIGCONT)  # a frozen one cannot stop otherwise
                d.ensure_stopped()


def test_sigstop_the_active_standby_takes_over_old_one_is_fenced(
    pair: tuple[Node, Node, Daemon, Daemon],
) -> None:
    a, b, da, db = pair
    ca = a.cluster()
    # node-a started first and holds the lease; on a machine loaded enough to starve its
    # renewals for a whole lease (seen at load 20-32), node-b has already taken it over, as it
    # must: the case is then played with the roles swapped (the one active now is frozen)
    if ca["holder"] == "node-b":
        print(f"roles swapped: node-b took the lease at start (epoch {ca['epoch']})")
        a, b, da, db = b, a, db, da
    ca, cb = a.cluster(), b.cluster()
    e1 = ca["epoch"]
    assert (ca["role"], ca["holder"]) == ("active", a.node), (ca, da.log())
    assert (cb["role"], cb["holder"]) == ("standby", a.node), cb
    refused = b.cordon("run", HOLD, "-s", SITE_B, "--yes", "--detach", user="bob")
    assert refused.returncode == STANDBY, refused.stderr
    assert f"node {b.node}) is a standby" in refused.stderr, refused.stderr
    assert f"{a.node} (epoch {e1})" in refused.stderr, refused.stderr

    started = a.ok_json("run", HOLD, "-s", SITE_B, "--yes", "--detach", user="bob")
    run_id = started["run_id"]
    assert started["status"] == "awaiting_approval"

    os.kill(da.pid, signal.SIGSTOP)
    frozen = time.time()
    t0 = time.monotonic()
    taken = wait_until(lambda: b.cluster()["role"] == "active", timeout=60, step=0.1)
    took = time.monotonic() - t0
    assert taken, db.log()
    print(f"failover: {b.node} active {took:.2f} s after {a.node} was frozen (bound {BOUND_S} s)")
    cb = b.cluster()
    e2 = e1 + 1
    assert (cb["holder"], cb["epoch"], cb["taken_from"]) == (b.node, e2, a.node), cb
    assert f"ACTIVE with epoch {e2} (took over from {a.node})" in db.log()
    text = b.cordon("status", user="dave").stdout
    assert f"this node {b.node}: ACTIVE; active: {b.node} (epoch {e2}); last takeover" in text, text
    assert f"from {a.node}" in text
    # the new active node took the open run on, as a daemon does at start
    assert any(e.get("run_id") == run_id for e in b.events("daemon.resume")), db.log()
    time.sleep(BOUND_S)  # the frozen node stays frozen well past its lease

    os.kill(da.pid, signal.SIGCONT)
    resumed = time.time()
    said = wait_until(lambda: f"STEPPED DOWN from epoch {e1}" in da.log(), timeout=60, step=0.1)
    assert said, da.log()
    down = [(e["node"], e["epoch"]) for e in a.events("node.stepped_down")]
    assert down == [(a.node, e1)], down
    # it refuses orders, naming the active node
    late = a.cordon("approve", run_id, "--reason", "too late", user="carol")
    assert late.returncode == STANDBY, late.stderr
    assert f"node {b.node} (epoch {e2})" in late.stderr
    assert a.cluster()["role"] == "standby"

    # the run goes on through the new active node: approved there, driven to its end (no device
    # is reachable in its namespace: the backup fails, nothing sent)
    ok = b.cordon("approve", run_id, "--reason", "checked with bob", user="carol")
    assert ok.returncode == 0, ok.stderr
    final = show_until(b, run_id, lambda r: r["status"] not in OPEN, timeout=120)
    assert final["approval"]["actor"] == "carol"
    assert "backup failed, nothing sent" in final["detail"]
    assert any(e.get("run_id") == run_id for e in b.events("run.approved"))
    # the frozen node sent nothing and journaled nothing toward a device since it was frozen
    assert a.events_after(frozen, SENDING) == []
    assert a.events_after(resumed, ("run.approved", "run.finished", "daemon.resume")) == []
    nodes = {n["node"]: n for n in b.cluster()["nodes"]}
    assert nodes[a.node]["role"] == "standby" and nodes[b.node]["role"] == "active"
