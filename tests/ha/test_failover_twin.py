"""Failover on the twin, with real runs (one test: the twin is shared). Two real daemons (node-a,
node-b) share one PostgreSQL state database; each runs preventive-degraded on one site with a
pause between device steps, so a run is caught half-way.

1. The classic fencing case: node-a is frozen (SIGSTOP) mid-run; node-b takes the lease (epoch
   2) and finishes the run; node-a, resumed (SIGCONT), has its next journal write fenced
   (`node.fenced`), sends nothing, steps down and says so.
2. SIGKILL: node-b, now active, is killed mid-run; node-a (standby again) takes the lease (epoch
   3), settles what was in flight by reading the devices, and finishes that run.
Each run is rolled back afterwards and every flow is open again.
3. One audit trail: `cordon audit verify` passes on the group's one chain (in the database), each
   run's events are there once, each takeover recorded, nothing of epoch 1 after epoch 2."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agent.audit.pgchain import read_records
from agent.lab import flows, ready
from tests.conftest import Twin
from tests.daemon.test_daemon_cli import OPEN, Daemon, show_until, wait_until
from tests.ha.test_failover import BOUND_S, SENDING, Node
from tests.pgserver import PgServer

pytestmark = pytest.mark.twin

SITE = "nantes-jules-verne"


class TwinNode(Node):
    def env(self, user: str | None = None) -> dict[str, str]:
        return {**super().env(user), "CORDON_STEP_PAUSE": "1.5"}


def count(url: str, sql: str) -> int:
    with psycopg.connect(url) as db:
        row = db.execute(sql).fetchone()
    return int(row[0]) if row is not None else 0


def start_half_way(node: TwinNode, url: str) -> tuple[str, int, int]:
    """A run through `node`, caught with at least one step verified and one not yet."""
    started = node.ok_json(
        "run", "preventive-degraded", "-s", SITE, "--yes", "--detach", "--reason", "drill",
        user="alice",
    )  # fmt: skip
    run_id = str(started["run_id"])
    verified = f"SELECT count(*) FROM steps WHERE run_id = '{run_id}' AND status = 'verified'"
    assert wait_until(lambda: count(url, verified) >= 1, timeout=120, step=0.05)
    total = count(url, f"SELECT count(*) FROM steps WHERE run_id = '{run_id}'")
    done = count(url, verified)
    assert done < total  # caught half-way
    return run_id, done, total


def finished(node: TwinNode, run_id: str) -> None:
    final = show_until(node, run_id, lambda r: r["status"] not in OPEN, timeout=300)
    assert final["status"] == "done", final
    assert {s["status"] for s in final["steps"]} == {"verified"}
    assert any(e.get("run_id") == run_id for e in node.events("daemon.resume"))


def roll_back(node: TwinNode, run_id: str, twin: Twin) -> None:
    back = node.cordon("rollback", run_id, "--json", user="bob", timeout=600)
    assert back.returncode == 0, back.stdout + back.stderr
    assert wait_until(
        lambda: all(o.observed_open for o in flows.observe(twin.inv, twin.bp)), timeout=30
    )


def cut(twin: Twin) -> bool:
    return not all(o.observed_open for o in flows.observe(twin.inv, twin.bp))


def one_audit_trail(a: TwinNode, url: str, runs: list[str]) -> None:
    """After both failovers: one chain holding both nodes' records, which `cordon audit verify`
    passes; each run's events there exactly once; each takeover recorded by its new holder; no
    record of epoch 1 after node-b took epoch 2 (what node-a tried to write then is in its own
    log directory, marked refused)."""
    done = a.cordon("audit", "verify", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    records = read_records(url)
    assert (result["verdict"], result["records"]) == ("ok", len(records)), result
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert {r["writer"] for r in records} == {"node-a", "node-b"}

    def named(event: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            r
            for r in records
            if r["event"] == event and all(r.get(k) == v for k, v in fields.items())
        ]

    active = [
        (r["node"], r["epoch"], r["taken_from"], r["writer_epoch"]) for r in named("node.active")
    ]
    assert active == [
        ("node-a", 1, None, 1),
        ("node-b", 2, "node-a", 2),
        ("node-a", 3, "node-b", 3),
    ], active
    took_over = named("node.active", epoch=2)[0]["seq"]
    assert max(r["seq"] for r in records if r["writer_epoch"] == 1) < took_over
    assert named("node.fenced", node="node-a", epoch=1)
    assert len(named("node.stepped_down", node="node-a", epoch=1)) == 1
    for run_id in runs:
        for event in ("run.started", "run.finished"):
            assert len(named(event, run_id=run_id)) == 1, (run_id, event)
        with psycopg.connect(url) as db:
            planned = Counter(
                db.execute("SELECT step, device FROM steps WHERE run_id = %s", (run_id,))
            )
        succeeded = Counter(
            (r["step"], r["device"]) for r in named("step.succeeded", run_id=run_id)
        )
        settled = sum(int(r["settled"]) for r in named("run.resumed", run_id=run_id))
        assert succeeded <= planned, (succeeded, planned)  # no step's success recorded twice
        missing = planned.total() - succeeded.total()
        assert missing <= settled, (planned, succeeded, settled)  # only what a takeover settled
        print(
            f"run {run_id}: {succeeded.total()} step.succeeded of {planned.total()} steps "
            f"({settled} settled from the devices at the takeover)"
        )
    kept = [
        json.loads(line)
        for path in sorted(a.logs.glob("audit-*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert all("refused" in r and r["writer_epoch"] == 1 for r in kept), kept
    print(f"one chain: {len(records)} records, verified; {len(kept)} refused record(s) of node-a")


def test_sigstop_then_sigkill_of_the_active_daemon_mid_run(
    twin: Twin, pg_server: PgServer, tmp_path: Path
) -> None:
    url = pg_server.database()
    a = TwinNode(tmp_path / "a", isolate_net=False, url=url, node="node-a")
    b = TwinNode(tmp_path / "b", isolate_net=False, url=url, node="node-b")
    b.tokens = a.tokens
    ready.check(twin.inv, twin.bp)
    da = a.daemon().ready()
    db: Daemon | None = None
    open_runs: list[tuple[TwinNode, str]] = []
    try:
        db = b.daemon().ready()
        assert a.cluster()["role"] == "active" and b.cluster()["role"] == "standby"

        # 1. SIGSTOP node-a mid-run
        r1, done, total = start_half_way(a, url)
        open_runs.append((b, r1))
        os.kill(da.pid, signal.SIGSTOP)
        frozen = time.time()
        assert wait_until(lambda: b.cluster()["role"] == "active", timeout=60, step=0.1)
        cb = b.cluster()
        assert (cb["holder"], cb["epoch"], cb["taken_from"]) == ("node-b", 2, "node-a")
        finished(b, r1)
        print(f"run 1: node-a verified {done} of {total} steps, frozen; node-b finished it")
        assert cut(twin)
        os.kill(da.pid, signal.SIGCONT)
        assert wait_until(lambda: "STEPPED DOWN from epoch 1" in da.log(), timeout=60), da.log()
        assert wait_until(lambda: a.events("node.fenced"), timeout=60), da.log()
        fenced = a.events("node.fenced")
        assert {(e["node"], e["epoch"]) for e in fenced} == {("node-a", 1)}
        assert a.events_after(frozen, SENDING) == []  # nothing sent after the freeze
        roll_back(b, r1, twin)
        open_runs.clear()

        # 2. SIGKILL node-b (active now) mid-run: node-a takes over again
        r2, done, total = start_half_way(b, url)
        open_runs.append((a, r2))
        os.kill(db.pid, signal.SIGKILL)
        killed = time.monotonic()
        assert wait_until(lambda: a.cluster()["role"] == "active", timeout=60, step=0.1)
        print(f"failover after SIGKILL: {time.monotonic() - killed:.2f} s (bound {BOUND_S} s)")
        ca = a.cluster()
        assert (ca["holder"], ca["epoch"], ca["taken_from"]) == ("node-a", 3, "node-b")
        finished(a, r2)
        print(f"run 2: node-b verified {done} of {total} steps, killed; node-a finished it")
        assert cut(twin)
        roll_back(a, r2, twin)
        open_runs.clear()

        # 3. one audit trail: both nodes' records in the group's one chain, which verifies
        assert da.stop() == 0  # node-a, active, seals the chain head as it stops
        one_audit_trail(a, url, [r1, r2])
    finally:
        try:
            for node, run_id in open_runs:  # a failed assertion above: the twin back to normal
                node.cordon("rollback", run_id, "--json", user="bob", timeout=600)
        finally:
            for d in (da, db):
                if d is not None:
                    if d.proc.poll() is None:
                        os.kill(d.pid, signal.SIGCONT)
                    d.ensure_stopped()
