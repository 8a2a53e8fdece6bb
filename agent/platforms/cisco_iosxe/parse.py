"""Owns the cisco_iosxe read-back parsers: Cordon's own objects in a running configuration (its
ACLs, their bindings, its object-groups), interface addresses, `show ip access-lists` match
counts, the archive and rollback-timer answers, the CLI error pattern, and a backup's own lines
(the baseline compares them). `show interfaces` is IOS's format, parsed by cisco_ios's parser.
Pure: imports this folder's renderer (names) and the driver contract's types; raises ValueError
on unparseable input."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from agent.platforms.cisco_ios.parse import parse_show_interface, parse_show_interface_brief
from agent.platforms.cisco_iosxe.render import NET_PREFIX, PREFIX

__all__ = ["parse_show_interface", "parse_show_interface_brief"]

# IOS-XE's answers to a refused command; netmiko's error_pattern (re.M).
CLI_ERROR_PATTERN = (
    r"^\s*%\s*(?:Invalid input|Incomplete command|Ambiguous command|Error|Failed|"
    r"No Rollback Confirmed Change pending|Turn config archive on|Rollback Confirmed Change "
    r"is already|Unknown)[^\n]*$"
)
_CLI_ERROR_RE = re.compile(CLI_ERROR_PATTERN, re.M | re.I)

ARCHIVE_OFF = "Archive feature not enabled"
NO_PENDING = "No Rollback Confirmed Change pending"


def cli_error(output: str) -> str | None:
    """The first line of `output` that says a command was refused, or None."""
    m = _CLI_ERROR_RE.search(output)
    return m.group(0).strip() if m else None


_PERCENT = re.compile(r"^\s*%[^\n]*$", re.M)


def refusal(output: str) -> str | None:
    """The line of `output` that refuses a command in any wording: a known error (`cli_error`),
    else the first line IOS marks with `%`; None when there is none."""
    found = cli_error(output)
    if found is None and (m := _PERCENT.search(output)) is not None:
        found = m.group(0).strip()
    return found


@dataclass
class Section:
    """One top-level block of a running configuration: its head line and its body lines."""

    head: str
    body: list[str] = field(default_factory=list)


def sections(text: str) -> list[Section]:
    """The top-level blocks of a running configuration (`!` lines and blanks dropped)."""
    out: list[Section] = []
    for raw in text.replace("\r", "").split("\n"):
        line = raw.rstrip()
        if not line.strip() or line.strip().startswith("!"):
            continue
        if line[0] != " ":
            out.append(Section(line))
        elif out:
            out[-1].body.append(line.strip())
    return out


_SEQ = re.compile(r"^\d+\s+")
_ACL_HEAD = re.compile(r"^ip access-list extended (\S+)$")


def ours(text: str) -> str:
    """Cordon's objects in a running configuration, normalized (sequence numbers dropped):
    its ACLs, its object-groups and the interface lines that bind its ACLs ("" if none)."""
    out: list[str] = []
    for sec in sections(text):
        m = _ACL_HEAD.match(sec.head)
        if m and m.group(1).startswith(PREFIX + "-") and not m.group(1).startswith(NET_PREFIX):
            out.append(sec.head)
            out += [" " + _SEQ.sub("", b) for b in sec.body]
        elif sec.head.startswith(f"object-group network {NET_PREFIX}"):
            out.append(sec.head)
            out += [" " + b for b in sec.body]
        elif sec.head.startswith("interface "):
            binds = [b for b in sec.body if re.match(rf"ip access-group {PREFIX}-\S+ (in|out)$", b)]
            if binds:
                out.append(sec.head)
                out += [" " + b for b in binds]
    return "\n".join(out) + "\n" if out else ""


def cordon_acls(text: str) -> dict[str, list[str]]:
    """Cordon's ACLs in a running configuration: name -> its lines (remarks and entries, in
    order, sequence numbers dropped)."""
    out: dict[str, list[str]] = {}
    for sec in sections(text):
        m = _ACL_HEAD.match(sec.head)
        if m and m.group(1).startswith(PREFIX + "-"):
            out[m.group(1)] = [_SEQ.sub("", b) for b in sec.body]
    return out


def bindings(text: str) -> dict[tuple[str, str], str]:
    """(interface, direction) -> the ACL bound there, for every `ip access-group` line."""
    out: dict[tuple[str, str], str] = {}
    for sec in sections(text):
        if not sec.head.startswith("interface "):
            continue
        name = sec.head.split(None, 1)[1]
        for b in sec.body:
            m = re.match(r"^ip access-group (\S+) (in|out)$", b)
            if m:
                out[(name, m.group(2))] = m.group(1)
    return out


def net_groups(text: str) -> dict[str, list[str]]:
    """Cordon's network object-groups: name -> its entry lines."""
    return {
        sec.head.split()[2]: sec.body
        for sec in sections(text)
        if sec.head.startswith(f"object-group network {NET_PREFIX}")
    }


def interface_networks(text: str) -> dict[str, list[ipaddress.IPv4Network]]:
    """Interface -> the networks its `ip address` lines connect (secondaries included)."""
    out: dict[str, list[ipaddress.IPv4Network]] = {}
    for sec in sections(text):
        if not sec.head.startswith("interface "):
            continue
        name = sec.head.split(None, 1)[1]
        for b in sec.body:
            m = re.match(
                r"^ip address (\d+\.\d+\.\d+\.\d+) (\d+\.\d+\.\d+\.\d+)(?: secondary)?$", b
            )
            if m:
                net = ipaddress.IPv4Network(f"{m.group(1)}/{m.group(2)}", strict=False)
                out.setdefault(name, []).append(net)
    return out


_REMARK = re.compile(rf"^remark ({re.escape(PREFIX)} #[0-9a-f]{{8}}.*)$")


def rule_comments_in(text: str) -> frozenset[str]:
    """The remarks of Cordon's rules in the text of its objects as read back (`Facts.ours`)."""
    found = set()
    for lines in cordon_acls(text).values():
        for line in lines:
            m = _REMARK.match(line)
            if m:
                found.add(m.group(1).rstrip())
    return frozenset(found)


def remarks_in_order(text: str) -> list[str]:
    """Every Cordon rule remark in order, duplicates kept (the driver's ReadsRuleComments)."""
    out: list[str] = []
    for lines in cordon_acls(text).values():
        out += [m.group(1).rstrip() for line in lines if (m := _REMARK.match(line))]
    return out


_SHOW_ACL_HEAD = re.compile(r"^(?:Extended|Standard) IP access list (\S+)\s*$")
_SHOW_ACL_ENTRY = re.compile(r"^\s+(\d+) (permit|deny) (.*?)(?: \((\d+) matches?\))?\s*$")


def show_access_lists(text: str) -> dict[str, list[tuple[int, str, int]]]:
    """`show ip access-lists`: name -> [(sequence, entry, matches)] (remarks are not shown)."""
    out: dict[str, list[tuple[int, str, int]]] = {}
    cur: list[tuple[int, str, int]] | None = None
    for raw in text.replace("\r", "").split("\n"):
        if m := _SHOW_ACL_HEAD.match(raw):
            cur = out.setdefault(m.group(1), [])
        elif cur is not None and (m := _SHOW_ACL_ENTRY.match(raw)):
            cur.append((int(m.group(1)), f"{m.group(2)} {m.group(3)}", int(m.group(4) or 0)))
        elif raw.strip() and cur is not None and not raw.startswith(" "):
            cur = None
    return out


def counters(config: str, shown: str) -> dict[str, int]:
    """Matches of each Cordon rule keyed by its remark: the n-th entry of an ACL in
    `show ip access-lists` is the n-th entry of its running configuration, under its remark."""
    counts = show_access_lists(shown)
    out: dict[str, int] = {}
    for name, lines in cordon_acls(config).items():
        entries = counts.get(name, [])
        k, pending = 0, None
        for line in lines:
            if m := _REMARK.match(line):
                pending = m.group(1).rstrip()
                continue
            if line.startswith("remark"):
                continue
            if pending is not None and k < len(entries):
                out[pending] = out.get(pending, 0) + entries[k][2]
            pending = None
            k += 1
    return out


def archive_enabled(show_archive: str) -> bool:
    """Does `show archive` say the archive is configured?"""
    if ARCHIVE_OFF.lower() in show_archive.lower():
        return False
    if "maximum archive configurations" in show_archive.lower():
        return True
    raise ValueError("no archive state in the 'show archive' output")


def archive_path(config: str) -> str | None:
    """The `path` of the `archive` block of a running configuration, None without one."""
    for sec in sections(config):
        if sec.head == "archive":
            for b in sec.body:
                if b.startswith("path "):
                    return b.split(None, 1)[1]
    return None


def rollback_pending(text: str) -> bool:
    """`show archive config rollback timer`: is a Rollback Confirmed Change waiting?"""
    if NO_PENDING.lower() in text.lower():
        return False
    if "timer value" in text.lower():
        return True
    raise ValueError("no rollback timer state in the 'show archive config rollback timer' output")


_VOLATILE = re.compile(r"^(Building configuration|Current configuration|!Time:|! Last|! NVRAM)")
_SHUT = re.compile(r"^\s*(no )?shutdown\s*$")


def config_lines(text: str) -> list[str]:
    """A running-config backup's lines apart from what isolation changes (shutdowns, Cordon's
    ACLs, object-groups and bindings) and the header lines that change by themselves."""
    out: list[str] = []
    skip = False
    for ln in text.replace("\r", "").splitlines():
        if ln and ln[0] != " ":
            skip = ln.startswith(
                (f"ip access-list extended {PREFIX}-", f"object-group network {NET_PREFIX}")
            )
        if skip or _VOLATILE.match(ln) or _SHUT.match(ln):
            continue
        if re.match(rf"^\s*ip access-group {PREFIX}-\S+ (in|out)\s*$", ln):
            continue
        out.append(ln)
    return out
