"""The twin's flow verifier for the engine's verify_flows steps, when a twin of this inventory is
up: what a composition root (the daemon's `main`, the CLI's `--local` path and `resume`, the demo)
hands the engine. The engine and the service never import the twin; they take a verifier given.

Imports the lab's own modules, the inventory models and the network state types.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from agent.inventory.models import Inventory
from agent.lab import build
from agent.lab.flows import engine_verifier
from agent.lab.state import LabState
from agent.lab.topology import blueprint
from agent.network.state import DeviceState

States = Mapping[str, DeviceState]


def twin_verifier(
    inv: Inventory, current: Callable[[], States] | None = None
) -> Callable[[str, States], list[str]] | None:
    """On the twin (built from this inventory), verify_flows steps probe real flows. `current`
    (the journal's recorded states) is read again before a retry: with runs in parallel,
    another site may change while this one probes. None when no twin of `inv` is up."""
    state = LabState.load(build.DEFAULT_LAB)
    if state is None or state.phase != "up" or Path(state.inventory) != Path(inv.path):
        return None
    return engine_verifier(inv, blueprint(inv, state.lab), current=current)
