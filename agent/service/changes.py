"""Waking whoever waits for a run to change: the wait primitive behind `GET /v1/runs/<id>?wait=`
(a long-poll), so `cordon run` and `cordon show --follow`-style readers learn that a run moved or
ended at once instead of at their next poll (#18).

`Changes` is a counter under a condition: the service bumps it after anything that may change a
run (a progress line of the executor, a `proceed`, an approval, an attestation, a rollback);
`version` is the digest of a run's answer, which the reader sends back as `since`. Imports the
standard library and `agent.engine.wake` (the counter, shared with the journal's
writes) only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from agent.engine.wake import Changes

__all__ = ["RECHECK_S", "Changes", "version"]

# a waiter looks at the run again at least this often even when nothing here said it changed:
# another process may have (a `--local` run or a second daemon on the same state database)
RECHECK_S = 0.25


def version(body: Mapping[str, Any]) -> str:
    """The digest of a run's answer as the API sends it: two equal answers, one version."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
