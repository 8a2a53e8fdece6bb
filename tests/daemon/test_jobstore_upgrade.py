"""A daemon upgraded over the job store of the release before #12: its jobs name
`agent.daemon.jobs:poll|backup|proceed`, functions that moved to `agent.service.jobs`. The daemon
starts on it, its jobs are scheduled again under the new references, and they run: the open run
the old store had a job for proceeds to its end, and the poll runs.

`data/jobs-before-split.sqlite` was written once by the code of dbed1ff^ (the last commit with
`agent/daemon/jobs.py`) making the calls its `Service.start` and `Service.schedule` made:
`_scheduler(url)` started paused, then `add_job(jobs.poll, "interval", seconds=30, id="poll")`,
`add_job(jobs.backup, "interval", seconds=86400, id="backup")` and
`add_job(jobs.proceed, "date", args=[RUN_ID], id="run:" + RUN_ID, misfire_grace_time=None)` (a
run waiting 60 s), then shut down. The daemon runs in a network namespace of its own, as in
test_daemon_cli.py: the run's device step fails at once and nothing leaves the machine."""

from __future__ import annotations

import pickle
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from agent.api.client import Client
from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.engine.store import sqlalchemy_url
from agent.inventory import load
from agent.playbook import load as load_playbook
from agent.run.executor import Executor
from agent.service import jobs
from agent.status import OPEN
from tests.conftest import EXAMPLE, require_root
from tests.daemon.test_daemon_cli import Stack
from tests.engine.fakes import World

OLD_STORE = Path(__file__).parent / "data" / "jobs-before-split.sqlite"
RUN_ID = "20261207T031515Z-0a1b2c"  # the run the old store has a `proceed` job for
SITE = "nantes-jules-verne"


def stored_jobs(path: Path) -> dict[str, str]:
    """Job id -> the function reference the store holds for it (as APScheduler pickles it)."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT id, job_state FROM apscheduler_jobs").fetchall()
    return {job_id: pickle.loads(state)["func"] for job_id, state in rows}


def _old_store(state_where: Callable[[str], Path | str]) -> str:
    """The old store on this test's backend, as a SQLAlchemy URL: the file itself, or its rows
    in APScheduler's own table of a PostgreSQL database (what the daemon's URL gives)."""
    where = state_where("jobs")
    if isinstance(where, Path):
        shutil.copy(OLD_STORE, where)
        return f"sqlite:///{where}"
    url = sqlalchemy_url(where)
    store = SQLAlchemyJobStore(url=url)
    store.jobs_t.create(store.engine)
    with sqlite3.connect(OLD_STORE) as db:
        rows = db.execute("SELECT id, next_run_time, job_state FROM apscheduler_jobs").fetchall()
    with store.engine.begin() as pg:
        pg.execute(
            store.jobs_t.insert(),
            [{"id": i, "next_run_time": t, "job_state": s} for i, t, s in rows],
        )
    store.engine.dispose()
    return url


def test_the_old_references_are_renamed_before_the_scheduler_reads_the_store(
    state_where: Callable[[str], Path | str],
) -> None:
    """Every job comes back from the store, under the functions' new home (no root needed), on
    both backends (a SQLite file, PostgreSQL)."""
    url = _old_store(state_where)
    store = SQLAlchemyJobStore(url=url)
    assert sorted(jobs.upgrade_store(store)) == ["backup", "poll", f"run:{RUN_ID}"]
    store.start(BackgroundScheduler(), "default")  # not started: nothing runs
    restored = {j.id: (j.func, j.args) for j in store.get_all_jobs()}
    store.shutdown()
    assert restored == {
        "poll": (jobs.poll, ()),
        "backup": (jobs.backup, ()),
        f"run:{RUN_ID}": (jobs.proceed, (RUN_ID,)),
    }
    again = SQLAlchemyJobStore(url=url)
    assert jobs.upgrade_store(again) == []  # done once
    again.engine.dispose()


def test_the_job_store_follows_the_state_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without CORDON_STATE_URL the job store is the state directory's file; with it, the same
    database through SQLAlchemy's psycopg 3 dialect."""
    monkeypatch.delenv("CORDON_STATE_URL", raising=False)
    assert jobs.store_url(tmp_path) == f"sqlite:///{(tmp_path / 'jobs.sqlite').resolve()}"
    monkeypatch.setenv("CORDON_STATE_URL", "postgresql://cordon@/db?host=/run/pg&port=5433")
    assert jobs.store_url(tmp_path) == "postgresql+psycopg://cordon@/db?host=/run/pg&port=5433"


@pytest.mark.sqlite_only(
    "the previous release's job store is a SQLite file (jobs.sqlite); it never was on PostgreSQL"
)
def test_a_daemon_starts_on_the_previous_release_job_store_and_its_jobs_run(
    tmp_path: Path,
) -> None:
    require_root()
    assert set(stored_jobs(OLD_STORE).values()) == {
        "agent.daemon.jobs:poll",
        "agent.daemon.jobs:backup",
        "agent.daemon.jobs:proceed",
    }
    stack = Stack(tmp_path)
    stack.state.mkdir(parents=True)
    shutil.copy(OLD_STORE, stack.state / "jobs.sqlite")
    # the run the old daemon had a job for: journaled and open, nothing sent yet
    inv = load(EXAMPLE)
    pb_path = tmp_path / "q.yaml"
    pb_path.write_text(
        "name: q\nlevel: L4\nsteps:\n"
        "  - {name: quarantine, action: shut_zone_ports, zones: [admin]}\n"
    )
    journal = Journal(stack.state / "journal.sqlite")
    world = World()
    with Pool(inv, keepalive=None, factory=world.factory) as pool:
        Executor(inv, journal, pool, actor="alice").start(
            load_playbook(pb_path, inv), [SITE], run_id=RUN_ID
        )
    assert journal.run(RUN_ID).status in OPEN
    journal.close()

    daemon = stack.daemon(poll_interval=1).ready()
    try:
        status: dict[str, object] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with Client(daemon.socket, token=stack.tokens["dave"]) as client:
                status = client.status()
            if not status["open_runs"] and status["last_poll"] is not None:
                break
            time.sleep(0.2)
        assert status["open_runs"] == [], status  # the run's job ran: the run ended
        assert status["last_poll"] is not None, status  # the poll job ran
        assert daemon.stop() == 0
    finally:
        daemon.ensure_stopped()
    assert world.log == []  # the fake devices were never reached: only the daemon ran it
    (finished,) = [e for e in stack.events("run.finished") if e.get("run_id") == RUN_ID]
    assert finished["outcome"] not in {str(s) for s in OPEN}
    # what the store holds now names the functions where they live
    assert stored_jobs(stack.state / "jobs.sqlite") == {
        "poll": "agent.service.jobs:poll",
        "backup": "agent.service.jobs:backup",
    }
    assert "Traceback" not in daemon.log(), daemon.log()
