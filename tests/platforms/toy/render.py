"""The toy platform's renderer: `port <if> disable|enable`, one line per interface. Pure."""

from __future__ import annotations


def port_lines(interfaces: list[str], *, down: bool) -> list[str]:
    verb = "disable" if down else "enable"
    return [f"port {name} {verb}" for name in sorted(interfaces)]
