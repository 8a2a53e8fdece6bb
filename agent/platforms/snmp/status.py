"""Owns reading the admin and oper state of a few named interfaces over SNMP, cheaply, for the
daemon's poller: one GET of ifAdminStatus, ifOperStatus and the column that names each interface
(ifName, or ifDescr for an alias), at an ifIndex found by one walk of the name columns; a GET
whose name no longer matches (the device renumbered) says so, and the caller walks again.
Works on any driver that offers `ReadsSnmp`; imports the capability, the IF-MIB columns, errors.

    locate(d, names) -> {name: (ifIndex, naming column) | None}        one walk
    read(d, located, names) -> (admin, oper, missing) | None            GETs; None when stale
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agent.errors import SnmpError
from agent.platforms.capabilities import ReadsSnmp
from agent.platforms.snmp.mib import IF_ADMIN, IF_DESCR, IF_NAME, IF_OPER

GET_CHUNK = 39  # values per GET (3 per interface): each response fits one UDP datagram

Located = tuple[int, str]  # (ifIndex, the column OID whose value is the interface's name)
Status = tuple[dict[str, bool], dict[str, bool | None], set[str]]  # admin, oper, missing


def locate(
    d: ReadsSnmp, names: Sequence[str], operation: str = "poll"
) -> dict[str, Located | None]:
    """Where each of `names` is: walk ifName, then ifDescr for aliases (ifName wins); None for
    an interface the device does not list."""
    cols = d.walk([IF_NAME, IF_DESCR], operation)
    where: dict[str, Located] = {}
    for col in (IF_DESCR, IF_NAME):  # ifName wins over an ifDescr alias
        where.update({v: (i, col) for i, v in cols.get(col, {}).items() if isinstance(v, str)})
    return {n: where.get(n) for n in names}


def read(
    d: ReadsSnmp, located: Mapping[str, Located | None], names: Sequence[str]
) -> Status | None:
    """Admin and oper state of `names` at their `located` places (GETs of GET_CHUNK values);
    None when a place is unknown or stale (the index now names another interface, or none)."""
    if any(n not in located for n in names):
        return None
    present = [(n, found) for n in names if (found := located[n]) is not None]
    missing = {n for n in names if located[n] is None}
    oids = [
        oid
        for _, (i, named_by) in present
        for oid in (f"{IF_ADMIN}.{i}", f"{IF_OPER}.{i}", f"{named_by}.{i}")
    ]
    values: dict[str, Any] = {}
    try:
        for at in range(0, len(oids), GET_CHUNK):
            values.update(d.get(oids[at : at + GET_CHUNK]))
    except SnmpError:  # noSuchInstance: the device renumbered its interfaces
        return None
    admin: dict[str, bool] = {}
    oper: dict[str, bool | None] = {}
    for n, (i, named_by) in present:
        if values.get(f"{named_by}.{i}") != n:
            return None  # that ifIndex is another interface now
        admin[n] = values.get(f"{IF_ADMIN}.{i}") == 1
        oper[n] = values.get(f"{IF_OPER}.{i}") == 1
    return admin, oper, missing
