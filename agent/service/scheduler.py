"""The daemon's APScheduler: its persistent job store and the pool its jobs run on.

Imported only when a daemon schedules (never by `cordon run --local`: APScheduler and SQLAlchemy
cost its cold start, #18). Imports APScheduler and `agent.service.jobs` (the store's upgrade).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED

from agent.service import jobs


class StoppableScheduler(BackgroundScheduler):  # type: ignore[misc]  # APScheduler has no types
    """APScheduler 3's background scheduler without one race of its own shutdown.

    `shutdown` marks the scheduler stopped, then shuts its executors down holding the job
    stores' lock; its own thread, already past its loop's check, waits for that lock and then
    submits the jobs it finds due to a pool that is shut down: `RuntimeError: cannot schedule
    new futures after shutdown` with a traceback on the daemon's output (agronholm/apscheduler
    #985, no fix released in 3.11), and for a one-off job (a run's `proceed`) a `JobLookupError`
    that ends the thread with another. Here the thread looks for due jobs only while the
    scheduler is not stopped, checked under that same lock: either it finishes before the
    executors are shut down, or it sees the scheduler stopped and submits nothing. Nothing is
    lost by not starting a job then: every open run is scheduled again when a daemon becomes
    active (`Service._activate`), and the poll and the backup are periodic."""

    def _process_jobs(self) -> float | None:
        with self._jobstores_lock:  # reentrant: the base method takes it again
            if self.state == STATE_STOPPED:
                return None  # the loop ends: it runs while the scheduler is not stopped
            wait: Any = super()._process_jobs()
            return wait  # type: ignore[no-any-return]


def make_scheduler(url: str) -> BackgroundScheduler:
    """A scheduler (not started) on the job store at `url`, its stored jobs renamed to where
    they live now."""
    # pre-ping: a connection the database dropped (a PostgreSQL restart) is replaced, not used
    store = SQLAlchemyJobStore(url=url, engine_options={"pool_pre_ping": True})
    jobs.upgrade_store(store)  # jobs stored by an earlier release, under the names they have now
    return StoppableScheduler(
        jobstores={"default": store},
        executors={"default": ThreadPoolExecutor(8)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        timezone=UTC,
    )
