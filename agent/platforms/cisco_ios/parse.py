"""Owns the cisco_ios read-back parsers (show interface [brief]), the CLI error pattern and a
running-config backup's own lines (the baseline compares them).
Pure: imports only the driver contract's types; raises ValueError on unparseable input."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from agent.drivers.base import InterfaceState

# A command the device refused: FRR says `% Unknown command`, IOS `% Invalid input detected`.
# Used as netmiko's error_pattern (re.M): the whole matching line becomes the error text.
CLI_ERROR_PATTERN = (
    r"^\s*%\s*(?:Unknown command|Invalid input|Incomplete command|Command incomplete|"
    r"Ambiguous command|Error|Failed|Bad mask|Not allowed)[^\n]*$"
)
_CLI_ERROR_RE = re.compile(CLI_ERROR_PATTERN, re.M | re.I)


def cli_error(output: str) -> str | None:
    """The first line of `output` that says a command was rejected, or None."""
    m = _CLI_ERROR_RE.search(output)
    return m.group(0).strip() if m else None


# --------------------------------------------------------------------- IOS-style CLI output

_FRR_BRIEF_HEAD = re.compile(r"^Interface\s+Status\s+VRF\s+Addresses\s*$")
_IOS_BRIEF_HEAD = re.compile(r"^Interface\s+IP-Address\s+OK\?\s+Method\s+Status\s+Protocol\s*$")
_PROMPT_RE = re.compile(r"^[\w.-]+(?:\([\w-]+\))?[>#]")


def parse_show_interface_brief(text: str) -> tuple[InterfaceState, ...]:
    """Interfaces from FRR `show interface brief` or IOS `show ip interface brief`.

    FRR's Status column is the administrative state (oper is unknown: None); IOS gives Status
    ('administratively down' = admin down) and Protocol (oper).
    """
    lines = [line.rstrip() for line in text.replace("\r", "").split("\n")]
    for i, line in enumerate(lines):
        if _FRR_BRIEF_HEAD.match(line):
            return tuple(_frr_brief_rows(lines[i + 1 :]))
        if _IOS_BRIEF_HEAD.match(line):
            return tuple(_ios_brief_rows(lines[i + 1 :]))
    raise ValueError("no 'show interface brief' table header in the output")


def _rows(lines: Sequence[str]) -> Iterator[list[str]]:
    for line in lines:
        if not line.strip() or set(line.replace(" ", "")) <= {"-"}:
            continue
        if _PROMPT_RE.match(line):
            break
        yield line.split()


def _frr_brief_rows(lines: Sequence[str]) -> Iterator[InterfaceState]:
    for cols in _rows(lines):
        if len(cols) < 2 or cols[1] not in ("up", "down"):
            raise ValueError(f"unexpected 'show interface brief' row: {' '.join(cols)!r}")
        yield InterfaceState(name=cols[0], admin_up=cols[1] == "up")


def _ios_brief_rows(lines: Sequence[str]) -> Iterator[InterfaceState]:
    for cols in _rows(lines):
        if len(cols) < 6:
            raise ValueError(f"unexpected 'show ip interface brief' row: {' '.join(cols)!r}")
        protocol = cols[-1]
        status = " ".join(cols[4:-1])
        yield InterfaceState(
            name=cols[0],
            admin_up=status not in ("administratively down", "deleted"),
            oper_up=protocol == "up",
        )


_SHOW_IF_HEAD = re.compile(
    r"^(?:Interface\s+)?(?P<name>[A-Za-z][\w./:-]*) is (?P<admin>administratively down|up|down|"
    r"deleted)(?:, line protocol is (?P<proto>up|down|detection is disabled))?",
)
_SHOW_IF_INDEX = re.compile(r"^\s*index (\d+)\b")
_SHOW_IF_FLAGS = re.compile(r"^\s*flags: <([^>]*)>")
_SHOW_IF_IN = re.compile(r"(\d+) packets input, (\d+) bytes")
_SHOW_IF_OUT = re.compile(r"(\d+) packets output, (\d+) bytes")


def parse_show_interface(text: str) -> tuple[InterfaceState, ...]:
    """Interfaces from the full `show interface` (FRR) or `show interfaces` (IOS) output.

    'X is administratively down' (IOS) and FRR's bare 'Interface X is down' are admin down; IOS
    'X is down, line protocol is down' is admin up, oper down. When FRR's link detection is off,
    the kernel RUNNING flag gives the oper state.
    """
    out: list[InterfaceState] = []
    cur: dict[str, Any] | None = None

    def flush() -> None:
        if cur is not None:
            out.append(InterfaceState(**cur))

    for raw in text.replace("\r", "").split("\n"):
        head = _SHOW_IF_HEAD.match(raw)
        if head:
            flush()
            admin_word, proto = head.group("admin"), head.group("proto")
            admin_up = admin_word == "up" or (admin_word == "down" and proto is not None)
            oper: bool | None
            if proto == "up":
                oper = True
            elif proto == "down" or not admin_up:
                oper = False
            else:
                oper = None
            cur = {"name": head.group("name"), "admin_up": admin_up, "oper_up": oper}
            continue
        if cur is None:
            continue
        if m := _SHOW_IF_INDEX.match(raw):
            cur["index"] = int(m.group(1))
        elif (m := _SHOW_IF_FLAGS.match(raw)) and cur["oper_up"] is None:
            cur["oper_up"] = "RUNNING" in m.group(1).split(",")
        elif m := _SHOW_IF_IN.search(raw):
            cur["in_octets"] = int(m.group(2))
        elif m := _SHOW_IF_OUT.search(raw):
            cur["out_octets"] = int(m.group(2))
    flush()
    if not out and "is " not in text:
        raise ValueError("no interface in the 'show interface' output")
    return tuple(out)


_VOLATILE = re.compile(r"^(Building configuration|Current configuration|!Time:|! Last)")
_SHUT = re.compile(r"^\s*(no )?shutdown\s*$")


def config_lines(text: str) -> list[str]:
    """A running-config backup's lines apart from interface shutdowns (isolation) and the
    header lines that change by themselves (size, time)."""
    return [ln for ln in text.splitlines() if not _VOLATILE.match(ln) and not _SHUT.match(ln)]
