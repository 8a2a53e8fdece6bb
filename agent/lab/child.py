"""What the twin's own long-running children (the zone services, the infected host's scanner)
share: an error printed with its hint, and a life between a ready file and a signal.
Imports only the standard library and `agent.errors`."""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from agent.errors import CordonError


def fail(prog: str, exc: CordonError) -> int:
    """Print `exc` (and its hint) on stderr; its exit code."""
    print(f"{prog}: {exc}", file=sys.stderr)
    if exc.hint:
        print(f"  hint: {exc.hint}", file=sys.stderr)
    return exc.exit_code


@contextmanager
def until_signalled(ready: Path | None) -> Iterator[socket.socket]:
    """A socket that becomes readable on SIGTERM, SIGINT or SIGHUP (select on it to stop); the
    ready file holds our PID meanwhile (written atomically, removed at the end)."""
    rsock, wsock = socket.socketpair()
    wsock.setblocking(False)
    signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        pass  # the wakeup fd does the work

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        if ready is not None:
            tmp = ready.with_name(ready.name + ".tmp")
            tmp.write_text(f"{os.getpid()}\n", encoding="utf-8")
            tmp.replace(ready)
        yield rsock
    finally:
        rsock.close()
        wsock.close()
        if ready is not None:
            ready.unlink(missing_ok=True)
