"""SIGKILL of the active daemon mid-soak, on the twin (issue #16: "mid-run and mid-soak"). Two
real daemons (node-a, node-b) share one PostgreSQL state database (tests/pgserver.py). Through
node-a, a recovered site is isolated, then reconnected zone by zone with soak gates; node-a is
killed (SIGKILL) while the first soak is open. node-b takes the lease (epoch 2) and the run: the
soak keeps its recorded end (not started again from zero, not skipped: its ticks go on past the
kill and it passes no earlier than that end), every later soak passes, the run finishes, and the
flow matrix is exactly the one the reconnection's plan announced. Both runs are rolled back
afterwards (newest first) and every flow is open again."""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from agent.lab import ready
from tests.conftest import Twin, matrix
from tests.daemon.on_twin import ATTEST, RECOVERED, expected_after, soak_gate
from tests.daemon.test_daemon_cli import OPEN, Daemon, show_until, wait_until
from tests.ha.test_failover import BOUND_S, Node
from tests.pgserver import PgServer

pytestmark = pytest.mark.twin

SOAK_S = 15  # several failover bounds: the kill lands well inside the first soak


def lease_taken_at(url: str) -> float:
    """When the current holder took the lease (the database's clock, seconds since the epoch)."""
    with psycopg.connect(url) as db:
        row = db.execute(
            "SELECT extract(epoch FROM acquired_at)::float8 FROM cordon_lease WHERE name = 'active'"
        ).fetchone()
    assert row is not None
    return float(row[0])


def test_sigkill_of_the_active_daemon_mid_soak(
    twin: Twin, pg_server: PgServer, tmp_path: Path
) -> None:
    url = pg_server.database()
    a = Node(tmp_path / "a", isolate_net=False, url=url, node="node-a")
    b = Node(tmp_path / "b", isolate_net=False, url=url, node="node-b")
    b.tokens = a.tokens
    ready.check(twin.inv, twin.bp)
    da = a.daemon().ready()
    db: Daemon | None = None
    runs: list[str] = []
    try:
        db = b.daemon().ready()
        assert a.cluster()["role"] == "active" and b.cluster()["role"] == "standby"

        isolated = a.ok_json("run", "isolate-site", "-s", RECOVERED, "--yes", user="bob")
        runs.append(str(isolated["run_id"]))
        assert isolated["status"] == "done", isolated
        plan = a.ok_json("plan", "reconnect", "-s", RECOVERED, user="bob")
        expected = expected_after(plan)
        started = a.ok_json(
            "run", "reconnect", "-s", RECOVERED, "--soak-seconds", str(SOAK_S), *ATTEST,
            "--yes", "--detach", user="bob",
        )  # fmt: skip
        run_id = str(started["run_id"])
        runs.append(run_id)

        soaking = soak_gate(a, run_id, "soak-servers", ticked=True, timeout=300)
        until = float(soaking["detail"]["until"])
        os.kill(da.pid, signal.SIGKILL)
        killed_wall, killed = time.time(), time.monotonic()
        assert da.proc.wait(timeout=60) == -signal.SIGKILL
        assert killed_wall < until, "the kill must land inside the soak"
        assert wait_until(lambda: b.cluster()["role"] == "active", timeout=60, step=0.1)
        taken = lease_taken_at(url)
        print(
            f"failover after SIGKILL mid-soak: lease taken {taken - killed_wall:.2f} s after the "
            f"kill by the database's clock (bound {BOUND_S} s); seen through the CLI after "
            f"{time.monotonic() - killed:.2f} s"
        )
        cb = b.cluster()
        assert (cb["holder"], cb["epoch"], cb["taken_from"]) == ("node-b", 2, "node-a")

        final = show_until(b, run_id, lambda r: r["status"] not in OPEN, timeout=600)
        assert final["status"] == "done", final
        gates = {g["step"]: g for g in final["gates"]}
        soaks = {name: g for name, g in gates.items() if name.startswith("soak-")}
        assert len(soaks) == 7, soaks
        assert {g["status"] for g in soaks.values()} == {"passed"}, soaks
        kept = gates["soak-servers"]
        # the same soak, continued by node-b: its recorded end did not move (not restarted),
        # it went on ticking after the kill and passed no earlier than that end (not skipped)
        assert float(kept["detail"]["until"]) == until
        assert int(kept["detail"]["ticks"]) > int(soaking["detail"]["ticks"])
        passed = [e for e in b.events("soak.passed") if e.get("run_id") == run_id]
        assert "soak-servers" in {e["step"] for e in passed}, passed
        passed_at = min(
            datetime.fromisoformat(str(e["ts"])).timestamp()
            for e in passed
            if e["step"] == "soak-servers"
        )
        assert passed_at >= until
        assert [e for e in a.events("soak.passed") if e.get("run_id") == run_id] == []
        assert any(e.get("run_id") == run_id for e in b.events("daemon.resume"))
        # the devices: exactly the reconnection's planned flow matrix
        assert wait_until(lambda: matrix(twin) == expected, timeout=30), {
            k: v for k, v in matrix(twin).items() if expected.get(k) != v
        }
    finally:
        try:
            if db is not None and db.proc.poll() is None:
                for run in reversed(runs):  # newest first, through the node now active
                    back = b.cordon("rollback", run, "--json", user="bob", timeout=600)
                    assert back.returncode == 0, back.stdout + back.stderr
        finally:
            for d in (da, db):
                if d is not None:
                    d.ensure_stopped()
    assert wait_until(lambda: all(matrix(twin).values()), timeout=30)
