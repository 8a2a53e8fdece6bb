"""The state directory's lock and the daemon's state file: what a `--local` command needs of the
daemon (is one up, hold the directory beside it) without importing the daemon itself (its API,
its nodes' directory: #18).

In the state directory:
    daemon.lock   flock: exclusive while a daemon runs; shared by a `--local` command that
                  changes something (so the two never drive the same runs at once)
    daemon.json   {"pid", "socket", "inventory", "state_dir", "started_at", "version"} while up

Imports the standard library and `agent.errors` only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.errors import DaemonError

__all__ = ["LOCK_FILE", "STATE_FILE", "read_state", "state_lock"]

STATE_FILE = "daemon.json"
LOCK_FILE = "daemon.lock"


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """What the daemon of `state_dir` wrote at start (None when none is up, or unreadable)."""
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def state_lock(state_dir: Path, *, shared: bool) -> Iterator[None]:
    """Hold the state directory: exclusively (the daemon) or shared (a local command that
    changes something). Refused at once, never waited for, naming who holds it."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _held(state_dir, shared=shared) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def _held(state_dir: Path, *, shared: bool) -> DaemonError:
    up = read_state(state_dir)
    if shared:
        where = f" (pid {up.get('pid')}, socket {up.get('socket')})" if up else ""
        return DaemonError(
            f"a cordon daemon owns {state_dir}{where}: it drives the runs, not this command",
            hint="drop --local: the order goes to the daemon",
        )
    if up is not None:
        return DaemonError(
            f"a cordon daemon already runs on {state_dir} "
            f"(pid {up.get('pid')}, socket {up.get('socket')})",
            hint="one daemon per state directory: stop it first, or use another --state-dir",
        )
    return DaemonError(
        f"a `cordon ... --local` command is using {state_dir} (a local run, approval...)",
        hint="let it finish (or stop it), then start the daemon: it takes open runs on",
    )
