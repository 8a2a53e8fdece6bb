"""Owns the SNMP renderer: one `ifAdminStatus <ifname> up|down` line per interface, parsed back
and sent as one SET by the SNMP driver. Pure: imports nothing of the project."""

from __future__ import annotations


def snmp_lines(interfaces: list[str], *, down: bool) -> list[str]:
    value = "down" if down else "up"
    return [f"ifAdminStatus {name} {value}" for name in sorted(interfaces)]
