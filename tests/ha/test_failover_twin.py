"""SIGKILL of the active daemon mid-run, on the twin: two real daemons (node-a, node-b) share one
PostgreSQL state database; node-a runs preventive-degraded on one site (a pause between device
steps, so the run is caught half-way) and is killed; node-b takes the lease (epoch 2), settles
what was in flight by reading the devices, and finishes the run: every step verified, the site's
flows really cut. bob's rollback through node-b opens them again."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psycopg
import pytest

from agent.lab import flows, ready
from tests.conftest import Twin
from tests.daemon.test_daemon_cli import OPEN, show_until, wait_until
from tests.ha.test_failover import BOUND_S, Node
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


def test_sigkill_the_active_mid_run_the_standby_finishes_it(
    twin: Twin, pg_server: PgServer, tmp_path: Path
) -> None:
    url = pg_server.database()
    a = TwinNode(tmp_path / "a", isolate_net=False, url=url, node="node-a")
    b = TwinNode(tmp_path / "b", isolate_net=False, url=url, node="node-b")
    b.tokens = a.tokens
    ready.check(twin.inv, twin.bp)
    da = a.daemon().ready()
    db = b.daemon().ready()
    run_id = None
    try:
        assert a.cluster()["role"] == "active" and b.cluster()["role"] == "standby"
        started = a.ok_json(
            "run", "preventive-degraded", "-s", SITE, "--yes", "--detach", "--reason", "drill",
            user="alice",
        )  # fmt: skip
        run_id = started["run_id"]
        q = f"SELECT count(*) FROM steps WHERE run_id = '{run_id}' AND status = 'verified'"
        assert wait_until(lambda: count(url, q) >= 1, timeout=120, step=0.05), da.log()
        total = count(url, f"SELECT count(*) FROM steps WHERE run_id = '{run_id}'")
        done_before = count(url, q)
        assert done_before < total  # caught half-way
        os.kill(da.pid, signal.SIGKILL)
        killed = time.monotonic()
        assert wait_until(lambda: b.cluster()["role"] == "active", timeout=60, step=0.1)
        print(f"failover after SIGKILL: {time.monotonic() - killed:.2f} s (bound {BOUND_S} s)")
        cb = b.cluster()
        assert (cb["holder"], cb["epoch"], cb["taken_from"]) == ("node-b", 2, "node-a")
        final = show_until(b, run_id, lambda r: r["status"] not in OPEN, timeout=300)
        assert final["status"] == "done", final
        assert {s["status"] for s in final["steps"]} == {"verified"}
        print(f"steps verified by node-a {done_before}, of {total}; node-b finished the run")
        assert any(e.get("run_id") == run_id for e in b.events("daemon.resume"))
        observed = {o.flow.name: o.observed_open for o in flows.observe(twin.inv, twin.bp)}
        assert not all(observed.values())  # the site's flows are really cut
    finally:
        try:
            if run_id is not None:
                back = b.cordon("rollback", run_id, "--json", user="bob", timeout=600)
                assert back.returncode == 0, back.stdout + back.stderr
                assert json.loads(back.stdout)["status"] in ("rolled_back", "done"), back.stdout
        finally:
            da.ensure_stopped()
            db.ensure_stopped()
    observed = wait_until(
        lambda: all(o.observed_open for o in flows.observe(twin.inv, twin.bp)), timeout=30
    )
    assert observed
