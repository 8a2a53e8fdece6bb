"""What every part of a run shares: the inventory, the journal, the drivers' pool, who acts, the
injected flow sources, the observer and the safety settings; the per-run lock; the stop check.
Imports the run's model and observer, the journal, the drivers' pool and the inventory model;
no other run part."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.errors import RunStopped
from agent.inventory.models import Inventory
from agent.run.model import Sources
from agent.run.observer import Observer

# one lock per run id for the whole process: two executors (the daemon makes one per caller)
# never proceed with the same run at once
_run_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def lock_for(run_id: str) -> threading.Lock:
    with _locks_guard:
        return _run_locks.setdefault(run_id, threading.Lock())


@dataclass
class Context:
    inv: Inventory
    journal: Journal
    pool: Pool
    actor: str
    sources: Sources
    obs: Observer
    # pacing between device steps, for drills on the twin (and crash tests)
    pause: float = 0.0
    # seconds an on-device revert waits before putting a lost device back in its fail-safe
    # state (and how long the controller keeps trying where the device has no timer)
    deadman: float = 30.0
    # free space the audit log directory must keep before anything is sent (MiB)
    audit_min_free: float = 64.0
    # a rollback of a run driven by another process first asks it to stop, this long (s)
    stop_wait: float = 120.0

    def check_stop(self, run_id: str, where: str) -> None:
        """Raise RunStopped if someone asked the run to stop (a rollback ordered elsewhere)."""
        why = self.journal.stop_requested(run_id)
        if why:
            raise RunStopped(f"run {run_id}: stopped before {where}: {why}")
