"""The twin's flow verifier for the engine, when the twin built from this inventory is up: what
the composition root (`agent.daemon.main`) and the CLI (--local, resume) hand to the executor.

Imports the twin's state, topology and flow probes, and the engine's types; never click.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from agent.engine.execute import FlowVerifier
from agent.engine.state import DeviceState
from agent.inventory.models import Inventory
from agent.lab import build
from agent.lab.flows import engine_verifier
from agent.lab.state import LabState
from agent.lab.topology import blueprint

__all__ = ["twin_verifier"]


def twin_verifier(
    inv: Inventory, current: Callable[[], Mapping[str, DeviceState]] | None = None
) -> FlowVerifier | None:
    """On the twin (built from this inventory), verify_flows steps probe real flows. `current`
    (the journal's recorded states) is read again before a retry: with runs in parallel,
    another site may change while this one probes."""
    state = LabState.load(build.DEFAULT_LAB)
    if state is None or state.phase != "up" or Path(state.inventory) != Path(inv.path):
        return None
    return engine_verifier(inv, blueprint(inv, state.lab), current=current)
