"""The twin's prober as a flow source for the engine's verify_flows steps and soaks, when a twin
of this inventory is up: what a composition root (the daemon's `main`, the CLI's `--local` path
and `resume`, the demo) adds to the production sources. The engine and the service never import
the twin; they take the sources given.

Imports the lab's state file reader and the inventory models; the twin's topology and prober
only when a twin of this inventory is up (a `--local` run or a daemon off the twin never loads
them: #16, #18), and for a one-shot command (`deferred`) only when a flow is first checked.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agent.inventory.models import Flow, Inventory
from agent.lab.state import DEFAULT_LAB, LabState

if TYPE_CHECKING:
    from agent.lab.flows import TwinSource
    from agent.verify.evidence import Evidence, Failed


def twin_source(inv: Inventory, *, deferred: bool = False) -> TwinSource | DeferredTwin | None:
    """On the twin (built from this inventory), the twin's prober as one more flow source
    (`twin`). None when no twin of `inv` is up. `deferred`: the twin's blueprint is computed and
    its prober loaded at the source's first check, not now (~0.1 s a `cordon run --local` whose
    playbook verifies no flow never spends, before its first device: #18); a daemon takes it
    now, before its first run."""
    state = LabState.load(DEFAULT_LAB)
    if state is None or state.phase != "up" or Path(state.inventory) != Path(inv.path):
        return None
    if deferred:
        return DeferredTwin(inv, state.lab)
    return _make(inv, state.lab)


def _make(inv: Inventory, lab: str) -> TwinSource:
    from agent.lab.flows import TwinSource  # noqa: PLC0415 - the twin is up: its prober
    from agent.lab.topology import blueprint  # noqa: PLC0415

    return TwinSource(inv, blueprint(inv, lab))


class DeferredTwin:
    """The twin's flow source (`twin`), made at its first check (thread-safe: a run's sites
    check their flows in parallel) from the inventory and the twin found up when it was given."""

    name = "twin"

    def __init__(self, inv: Inventory, lab: str) -> None:
        self.inv, self.lab = inv, lab
        self._lock = threading.Lock()
        self._source: TwinSource | None = None

    @property
    def made(self) -> bool:
        """Whether the twin's source was made (a flow was checked)."""
        return self._source is not None

    def _made(self) -> TwinSource:
        with self._lock:
            if self._source is None:
                self._source = _make(self.inv, self.lab)
            return self._source

    def check(
        self, site: str, flows: Sequence[Flow], expected: Mapping[str, bool]
    ) -> list[Evidence]:
        return self._made().check(site, flows, expected)

    def check_until(
        self, site: str, flows: Sequence[Flow], expected: Mapping[str, bool], failed: Failed
    ) -> list[Evidence]:
        """`TwinSource.check_until` (a `StopsEarly` source, like the one it stands for: it stops
        waiting for a flow another source already failed)."""
        return self._made().check_until(site, flows, expected, failed)
