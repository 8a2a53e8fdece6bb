"""Owns the device drivers, the only code that talks to devices, behind one `Driver` protocol.
Must not import the engine, daemon or CLI; netmiko/paramiko/pysnmp load only in their modules.

    driver_for(target, timeouts, via) -> Driver     an unconnected driver (ssh by platform, snmp)
    one_shot(target, ...) -> context manager        connect, use, close (the CLI's way)
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
from agent.drivers.pool import Outcome, Pool, driver_for, one_shot, raise_on_error

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
    "driver_for",
    "one_shot",
    "raise_on_error",
]
