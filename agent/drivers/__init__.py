"""Owns what every platform's driver shares: the `Driver` protocol and its frozen types, the SSH
transport with pinned host keys, the SNMP transport and its shared engines (`snmp`), the trail
that audits device commands, descriptor limits, and the warm-session pool. The drivers themselves
are in `agent.platforms.<platform>`; `agent.platforms.registry.driver_for` picks one.
Must not import the engine, daemon or CLI; netmiko/paramiko/pysnmp load only where used.

    Pool(inv, ...)                                  warm sessions: session(), run(), run_many()
    Driver: connect, close, is_open, ping, facts, backup, apply(ChangeSet), verify(Expectation)
"""

from __future__ import annotations

from agent.drivers.base import (
    CORDON_TABLE,
    ApplyResult,
    Backup,
    ChangeSet,
    Driver,
    Expectation,
    Facts,
    InterfaceState,
    Target,
    Timeouts,
    Via,
)
from agent.drivers.pool import Outcome, Pool, raise_on_error

__all__ = [
    "CORDON_TABLE",
    "ApplyResult",
    "Backup",
    "ChangeSet",
    "Driver",
    "Expectation",
    "Facts",
    "InterfaceState",
    "Outcome",
    "Pool",
    "Target",
    "Timeouts",
    "Via",
    "raise_on_error",
]
