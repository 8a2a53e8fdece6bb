"""The open-file budget of a pool (`agent.drivers.limits.descriptors_needed`): a FortiGate
session counts the sockets of all its pinned HTTPS connections, its own and the extra ones of
its overlapped policy lookups, and is counted first (the costliest)."""

from __future__ import annotations

from pathlib import Path

from agent.drivers import limits
from agent.inventory import load
from agent.platforms.fortigate.driver import LOOKUP_CONNECTIONS

INV = Path(__file__).parents[1] / "platforms" / "fortigate" / "data" / "fortigate-small.yaml"


def test_a_fortigate_session_counts_every_lookup_connection() -> None:
    assert max(limits.SSH_SESSION, LOOKUP_CONNECTIONS) == limits.FORTIGATE_SESSION
    inv = load(INV)
    devices = [d for _site, d in inv.devices()]
    assert [d.platform for d in devices].count("fortigate") == 1 and len(devices) > 1
    # one warm session: the FortiGate's, its 4 sockets
    assert limits.descriptors_needed(inv, 1) == limits.RESERVE + LOOKUP_CONNECTIONS
    # all of them warm: the FortiGate's 4 and 3 for each other
    assert limits.descriptors_needed(inv, len(devices)) == (
        limits.RESERVE + LOOKUP_CONNECTIONS + limits.SSH_SESSION * (len(devices) - 1)
    )
