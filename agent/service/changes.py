"""Waking whoever waits for a run to change: the wait primitive behind `GET /v1/runs/<id>?wait=`
(a long-poll), so `cordon run` and `cordon show --follow`-style readers learn that a run moved or
ended at once instead of at their next poll (#18).

`Changes` is a counter under a condition: the service bumps it after anything that may change a
run (a progress line of the executor, a `proceed`, an approval, an attestation, a rollback);
`version` is the digest of a run's answer, which the reader sends back as `since`. Imports the
standard library only.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["RECHECK_S", "Changes", "version"]

# a waiter looks at the run again at least this often even when nothing here said it changed:
# another process may have (a `--local` run or a second daemon on the same state database)
RECHECK_S = 0.25


def version(body: Mapping[str, Any]) -> str:
    """The digest of a run's answer as the API sends it: two equal answers, one version."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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
