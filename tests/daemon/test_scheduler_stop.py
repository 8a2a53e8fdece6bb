"""The daemon's scheduler stops without a traceback when a job falls due as it stops.

APScheduler 3 shuts its executors down while its own thread may still look for due jobs
(agronholm/apscheduler#985): the pool refused with `RuntimeError` and the scheduler printed a
traceback on the daemon's output (seen once in CI, tests/daemon/test_jobstore_upgrade.py). The
race is made certain here: the scheduler's job loop runs once more after `shutdown`, as its
thread does when it reached the loop's body just before `shutdown` marked it stopped.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from apscheduler.events import EVENT_JOB_SUBMITTED

from agent.service import jobs
from agent.service.scheduler import make_scheduler


@pytest.mark.parametrize("trigger", ["date", "interval"])
def test_jobs_due_as_the_scheduler_stops_are_not_submitted_and_no_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, trigger: str
) -> None:
    sched = make_scheduler(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    sched.start(paused=True)
    when = {"run_date": datetime.now(UTC)} if trigger == "date" else {"seconds": 1}
    sched.add_job(jobs.backup, trigger, id="due", next_run_time=datetime.now(UTC), **when)
    sched.shutdown(wait=True)
    with caplog.at_level(logging.DEBUG, logger="apscheduler"):
        wait = sched._process_jobs()  # what the scheduler's thread did when it lost the race
    assert wait is None
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert [r for r in caplog.records if r.exc_info] == []


def test_the_scheduler_still_runs_its_due_jobs(tmp_path: Path) -> None:
    """The guard is no stop: a running scheduler submits what falls due."""
    submitted = threading.Event()
    sched = make_scheduler(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    sched.add_listener(lambda _e: submitted.set(), EVENT_JOB_SUBMITTED)
    sched.start()
    try:
        sched.add_job(
            jobs.backup, "interval", seconds=3600, id="due", next_run_time=datetime.now(UTC)
        )
        assert submitted.wait(60), "a due job was never submitted"
    finally:
        sched.shutdown(wait=True)
