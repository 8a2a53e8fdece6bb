"""The production flow sources a composition root gives the run (the daemon, `--local`, `resume`,
the demo): today the devices' own decisions (`decisions.DeviceDecisions`). The twin's prober is
added beside them by the roots when a twin is up (`agent.lab.verifier.twin_source`), never here.

Imports the evidence contract, the device-decision source, the inventory and the drivers' pool."""

from __future__ import annotations

from agent.drivers.pool import Pool
from agent.inventory.models import Inventory
from agent.verify.decisions import DeviceDecisions
from agent.verify.evidence import FlowSource


def production_sources(inv: Inventory, pool: Pool) -> list[FlowSource]:
    """Every flow source that runs against the real devices."""
    return [DeviceDecisions(inv, pool)]
