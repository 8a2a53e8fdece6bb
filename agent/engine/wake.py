"""A count of possible changes under a condition, for whoever waits on them: the journal's
committed writes (`Journal.version`/`wait_change`, the verify gates' waits) and the service's run
changes (`agent.service.changes`, the long-polls of `GET /v1/runs/<id>?wait=`), #18. Imports the
standard library only."""

from __future__ import annotations

import threading

__all__ = ["Changes"]


class Changes:
    """A count of possible changes; `wait` returns as soon as it moves past what was seen."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0

    def notify(self) -> None:
        with self._cond:
            self._count += 1
            self._cond.notify_all()

    def count(self) -> int:
        with self._cond:
            return self._count

    def wait(self, seen: int, timeout: float) -> int:
        """Block until the count differs from `seen` or `timeout` seconds passed; the count."""
        with self._cond:
            self._cond.wait_for(lambda: self._count != seen, timeout=max(timeout, 0.0))
            return self._count
