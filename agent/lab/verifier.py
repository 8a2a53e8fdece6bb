"""The twin's prober as a flow source for the engine's verify_flows steps and soaks, when a twin
of this inventory is up: what a composition root (the daemon's `main`, the CLI's `--local` path
and `resume`, the demo) adds to the production sources. The engine and the service never import
the twin; they take the sources given.

Imports the lab's state file reader and the inventory models; the twin's topology and prober
only when a twin of this inventory is up (a `--local` run or a daemon off the twin never loads
them: #16, #18).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agent.inventory.models import Inventory
from agent.lab.state import DEFAULT_LAB, LabState

if TYPE_CHECKING:
    from agent.lab.flows import TwinSource


def twin_source(inv: Inventory) -> TwinSource | None:
    """On the twin (built from this inventory), the twin's prober as one more flow source
    (`twin`). None when no twin of `inv` is up."""
    state = LabState.load(DEFAULT_LAB)
    if state is None or state.phase != "up" or Path(state.inventory) != Path(inv.path):
        return None
    from agent.lab.flows import TwinSource  # noqa: PLC0415 - the twin is up: its prober
    from agent.lab.topology import blueprint  # noqa: PLC0415

    return TwinSource(inv, blueprint(inv, state.lab))
