"""The twin's prober as a flow source for the engine's verify_flows steps and soaks, when a twin
of this inventory is up: what a composition root (the daemon's `main`, the CLI's `--local` path
and `resume`, the demo) adds to the production sources. The engine and the service never import
the twin; they take the sources given.

Imports the lab's own modules, the inventory models and the flow-source contract.
"""

from __future__ import annotations

from pathlib import Path

from agent.inventory.models import Inventory
from agent.lab import build
from agent.lab.flows import TwinSource
from agent.lab.state import LabState
from agent.lab.topology import blueprint


def twin_source(inv: Inventory) -> TwinSource | None:
    """On the twin (built from this inventory), the twin's prober as one more flow source
    (`twin`). None when no twin of `inv` is up."""
    state = LabState.load(build.DEFAULT_LAB)
    if state is None or state.phase != "up" or Path(state.inventory) != Path(inv.path):
        return None
    return TwinSource(inv, blueprint(inv, state.lab))
