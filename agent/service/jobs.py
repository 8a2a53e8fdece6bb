"""The scheduler's jobs, as module-level functions so the persistent job store can name them
(`agent.service.jobs:proceed`). They act on the one `Service` of this process, attached at start;
a job that fires before (or after) has nothing to act on and says so.

Imports the audit trail, `agent.settings` (where the store is), `agent.engine.store` (the URL's
dialect) and `agent.errors` (the `Service` for its type only), and SQLAlchemy when a store is
upgraded; never the API.
Moving this module renames its jobs in the store: the module's earlier homes are listed in
`MOVED`, and `upgrade_store` renames a stored job naming one before the scheduler reads the store
(APScheduler would otherwise drop it with a traceback on the daemon's output; `Service.start`
schedules the poll, the backup and every open run again anyway, so nothing is lost either way).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import audit, settings
from agent.engine.store import sqlalchemy_url
from agent.errors import CordonError

if TYPE_CHECKING:
    from agent.service.service import Service

_service: Service | None = None

# Where this module's jobs lived in earlier releases (a reference prefix -> where it is now).
MOVED = {"agent.daemon.jobs:": "agent.service.jobs:"}


JOBS_NAME = "jobs.sqlite"


def store_url(state_dir: Path) -> str:
    """The SQLAlchemy URL of the job store: the database of `CORDON_STATE_URL` if set (its
    psycopg 3 dialect; APScheduler's table `apscheduler_jobs`), else the state directory's file."""
    url = settings.current().state_url
    if url:
        return sqlalchemy_url(url)
    return f"sqlite:///{(state_dir / JOBS_NAME).resolve()}"


def attach(service: Service | None) -> None:
    global _service  # noqa: PLW0603 - one service per daemon process
    _service = service


RETRY_S = 30.0  # a run whose proceed failed (a device unreachable on resume) is tried again


def proceed(run_id: str) -> None:
    if _service is None:
        return
    try:
        _service.proceed(run_id)
    except CordonError as exc:
        # the run stays open (its sites locked): try again later rather than forget it
        audit.get_logger().error(
            "run.proceed_failed", run_id=run_id, error=exc.message, retry_in_s=RETRY_S
        )
        _service.schedule(run_id, RETRY_S)


def poll() -> None:
    if _service is None:
        return
    try:
        _service.poll()
    except CordonError as exc:
        audit.get_logger().error("poll.failed", error=exc.message)


def backup() -> None:
    if _service is not None:
        _service.backup_all()


def upgrade_store(store: Any) -> list[str]:
    """Rename, in an APScheduler SQLAlchemy job store not started yet, every job whose function
    reference names an earlier home of this module (`MOVED`); the ids of the jobs renamed. A row
    that does not unpickle is left as it is (APScheduler reports and drops it as before)."""
    from sqlalchemy import select  # noqa: PLC0415 - the daemon's scheduler only

    table = store.jobs_t
    table.create(store.engine, checkfirst=True)  # a new store: no table yet, nothing to rename
    renamed = []
    with store.engine.begin() as db:
        for job_id, blob in db.execute(select(table.c.id, table.c.job_state)).all():
            try:
                # the daemon's own state file, unpickled as APScheduler itself does
                state = pickle.loads(blob)  # noqa: S301
                ref = state["func"]
            except Exception:  # noqa: S112 - not ours to judge: APScheduler reports it
                continue
            for old, new in MOVED.items():
                if isinstance(ref, str) and ref.startswith(old):
                    state["func"] = new + ref[len(old) :]
                    again = pickle.dumps(state, store.pickle_protocol)
                    db.execute(table.update().where(table.c.id == job_id).values(job_state=again))
                    renamed.append(job_id)
    return renamed
