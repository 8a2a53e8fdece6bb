"""Owns the cisco_ios renderer: interface shutdown / no shutdown lines (configuration mode; the
driver enters and leaves it). Pure: imports nothing of the project."""

from __future__ import annotations


def ios_lines(interfaces: list[str], *, down: bool) -> list[str]:
    out: list[str] = []
    for name in sorted(interfaces):
        out += [f"interface {name}", "shutdown" if down else "no shutdown"]
    return out
