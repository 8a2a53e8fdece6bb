"""Owns the parser of SNMP change lines (`ifAdminStatus <ifname> up|down`). Pure: imports
nothing of the project; raises ValueError on a line it does not accept."""

from __future__ import annotations

import re
from collections.abc import Iterable

# --------------------------------------------------------------------- SNMP change lines

_SNMP_LINE = re.compile(
    r"^ifAdminStatus\s+([A-Za-z][A-Za-z0-9]*(?:[./:-][A-Za-z0-9]+)*)\s+(up|down)$"
)


def parse_snmp_changes(commands: Iterable[str]) -> list[tuple[str, bool]]:
    """`ifAdminStatus <ifname> up|down` lines -> [(ifname, up)]; anything else is refused."""
    out = []
    for cmd in commands:
        m = _SNMP_LINE.match(cmd.strip())
        if not m:
            raise ValueError(f"{cmd!r} is not an SNMP change ('ifAdminStatus <ifname> up|down')")
        out.append((m.group(1), m.group(2) == "up"))
    if not out:
        raise ValueError("empty SNMP change set")
    return out
