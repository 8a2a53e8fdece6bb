"""The scheduler's jobs, as module-level functions so the persistent job store can name them
(`agent.service.jobs:proceed`). They act on the one `Service` of this process, attached at start;
a job that fires before (or after) has nothing to act on and says so.

Imports the audit trail and `agent.errors` (the `Service` for its type only); never the API.
Moving this module renames its jobs in the store: a row naming the old module cannot be restored;
APScheduler drops it (logged), and `Service.start` schedules the poll, the backup and every open
run again, so nothing is lost."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent import audit
from agent.errors import CordonError

if TYPE_CHECKING:
    from agent.service.service import Service

_service: Service | None = None


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
