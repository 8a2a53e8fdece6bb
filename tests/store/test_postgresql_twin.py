"""A daemon whose state is on PostgreSQL (`CORDON_STATE_URL`, the throwaway test cluster) on the
twin: a preventive-degraded run of one site, driven through the real `cordon` CLI, lands in the
database (the journal's run and steps, the health store's polls, the scheduler's jobs), nothing
in the state directory's SQLite files; `cordon status` reads it back from a new process with no
daemon (--local); bob's rollback opens every flow again."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from agent.api import nodes as api_nodes
from agent.audit import pgchain
from agent.engine import journal, lease
from agent.lab import flows, ready
from agent.service import health
from tests.conftest import Twin
from tests.daemon.test_daemon_cli import Stack, wait_until
from tests.pgserver import PgServer

pytestmark = pytest.mark.twin

SITE = "nantes-jules-verne"


@dataclass
class PgStack(Stack):
    """The daemon's stack with its state in a PostgreSQL database."""

    url: str = ""

    def env(self, user: str | None = None) -> dict[str, str]:
        return {**super().env(user), "CORDON_STATE_URL": self.url}


def matrix(twin: Twin) -> dict[str, bool]:
    return {o.flow.name: o.observed_open for o in flows.observe(twin.inv, twin.bp, timeout=1.5)}


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as db:
        return list(db.execute(sql).fetchall())


def test_a_daemon_on_postgresql_runs_and_status_reads_it_back(
    twin: Twin, pg_server: PgServer, tmp_path: Path
) -> None:
    url = pg_server.database()
    s = PgStack(tmp_path, isolate_net=False, url=url)
    ready.check(twin.inv, twin.bp)
    daemon = s.daemon(poll_interval=2.0).ready()
    run_id = None
    try:
        done = s.cordon(
            "run",
            "preventive-degraded",
            "-s",
            SITE,
            "--yes",
            "--json",
            "--reason",
            "attack at Rennes: preventive",
            user="alice",
            timeout=600,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        run = json.loads(done.stdout)
        run_id = run["run_id"]
        assert run["status"] == "done"
        # the journal is the database's: the run, its verified steps, the site's mode
        assert rows(url, f"SELECT status FROM runs WHERE run_id = '{run_id}'") == [("done",)]
        steps = rows(url, f"SELECT status FROM steps WHERE run_id = '{run_id}'")
        assert steps and {st for (st,) in steps} == {"verified"}
        assert rows(url, f"SELECT mode, level FROM sites WHERE site = '{SITE}'") == [
            ("isolated", "L2")
        ]
        # the health store's polls and the scheduler's jobs are there too, same schema version
        assert wait_until(lambda: rows(url, "SELECT count(*) FROM polls") != [(0,)], timeout=60)
        jobs = {j for (j,) in rows(url, "SELECT id FROM apscheduler_jobs")}
        assert {"poll", "backup"} <= jobs
        assert {r[0]: r[1] for r in rows(url, "SELECT store, version FROM cordon_schema")} == {
            "journal": journal.SCHEMA_VERSION,
            "health": health.SCHEMA_VERSION,
            "lease": lease.SCHEMA_VERSION,  # the active/standby lease (a lone daemon holds it)
            "api_nodes": api_nodes.SCHEMA_VERSION,  # each node's API address, for redirects
            "audit": pgchain.SCHEMA_VERSION,  # the group's one audit chain
        }
        assert sorted(p.name for p in s.state.glob("*.sqlite*")) == []
        assert not all(matrix(twin).values())  # the site's flows are really cut
        assert daemon.stop() == 0
        # no daemon now: a new process reads the database back
        status = s.cordon("status", "--json", "--local", user="dave")
        assert status.returncode == 0, status.stdout + status.stderr
        st = next(x for x in json.loads(status.stdout)["sites"] if x["site"] == SITE)
        assert (st["mode"], st["level"], st["by"], st["run_id"]) == (
            "isolated",
            "L2",
            "alice",
            run_id,
        )
        daemon = s.daemon(poll_interval=2.0).ready()
    finally:
        try:
            if run_id is not None:
                if daemon.proc.poll() is not None:
                    daemon = s.daemon(poll_interval=2.0).ready()
                back = s.cordon("rollback", run_id, "--json", user="bob", timeout=600)
                assert back.returncode == 0, back.stdout + back.stderr
        finally:
            daemon.ensure_stopped()
    assert rows(url, f"SELECT mode FROM sites WHERE site = '{SITE}'") == [("normal",)]
    assert wait_until(lambda: all(matrix(twin).values()), timeout=20)
