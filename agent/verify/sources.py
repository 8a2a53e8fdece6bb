"""The production flow sources a composition root gives the run (the daemon, `--local`, `resume`,
the demo): the devices' own decisions (`decisions.DeviceDecisions`), the traffic counters of the
accepts that keep flows (`counters`, compared with their previous reading: a verify step does not
wait) and the sites' probe points (`probes`, where the inventory declares them). The twin's
prober is added beside them by the roots when a twin is up (`agent.lab.verifier.twin_source`),
never here.

Imports the evidence contract, the sources, the inventory and the drivers' pool."""

from __future__ import annotations

from agent.drivers.pool import Pool
from agent.inventory.models import Inventory
from agent.verify.counters import counter_sources
from agent.verify.decisions import DeviceDecisions
from agent.verify.evidence import FlowSource
from agent.verify.probes import probe_sources


def production_sources(inv: Inventory, pool: Pool) -> list[FlowSource]:
    """Every flow source that runs against the real devices."""
    return [
        DeviceDecisions(inv, pool),
        *counter_sources(inv, pool, window_s=0),
        *probe_sources(inv),
    ]
