"""Owns the juniper_junos read-back parsers: Cordon's own lines in a `set`-format configuration
(`<get-configuration format="set">`) and the names they hold, the deletes that remove them,
`<get-interface-information>` and `<get-firewall-filter-information>` replies, `<rpc-error>`
texts, the commit history's pending confirmed commit, and a backup's own lines (the baseline).
Pure: imports the driver contract's types and the standard library's XML parser only; raises
ValueError on unparseable input."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from agent.drivers.base import InterfaceState
from agent.platforms.juniper_junos.render import PREFIX

_FILTER = re.compile(rf"^set firewall family inet filter (?P<f>{PREFIX}\S+) term (?P<t>\S+)(?: |$)")
_ATTACH = re.compile(
    r"^set interfaces (?P<ifd>\S+) unit (?P<unit>\d+) family inet filter "
    rf"(?P<dir>input|output) (?P<f>{PREFIX}\S+)$"
)
_DISABLE = re.compile(r"^set interfaces \S+(?: unit \d+)? disable$")


def ours(config: str) -> str:
    """Cordon's own lines of a `set`-format configuration: its filters and their attachments."""
    keep = [
        ln.strip()
        for ln in config.splitlines()
        if _FILTER.match(ln.strip()) or _ATTACH.match(ln.strip())
    ]
    return "\n".join(keep) + ("\n" if keep else "")


def names_in(text: str) -> frozenset[str]:
    """`FILTER/TERM` of every term and `@ifd.unit direction FILTER` of every attachment in
    Cordon's lines as read back (`Facts.ours`)."""
    return frozenset(names_listed(text))


def names_listed(text: str) -> list[str]:
    """The same names in the order they first appear (each once)."""
    out: list[str] = []
    for raw in text.splitlines():
        ln = raw.strip()
        if m := _FILTER.match(ln):
            name = f"{m.group('f')}/{m.group('t')}"
        elif m := _ATTACH.match(ln):
            name = f"@{m.group('ifd')}.{m.group('unit')} {m.group('dir')} {m.group('f')}"
        else:
            continue
        if name not in out:
            out.append(name)
    return out


def delete_lines(text: str) -> list[str]:
    """The `delete` lines that remove every CORDON- filter and attachment in `text`."""
    out: list[str] = []
    for raw in text.splitlines():
        ln = raw.strip()
        if m := _ATTACH.match(ln):
            cmd = (
                f"delete interfaces {m.group('ifd')} unit {m.group('unit')} family inet "
                f"filter {m.group('dir')}"
            )
        elif m := _FILTER.match(ln):
            cmd = f"delete firewall family inet filter {m.group('f')}"
        else:
            continue
        if cmd not in out:
            out.append(cmd)
    return sorted(out, key=lambda c: (not c.startswith("delete interfaces"), c))


def config_lines(text: str) -> list[str]:
    """A backup's lines apart from what isolation changes (Cordon's filters and attachments,
    interface `disable`) and the header lines that change by themselves (`## Last commit`)."""
    return [
        ln
        for ln in text.splitlines()
        if not ln.startswith("#")
        and not _FILTER.match(ln.strip())
        and not _ATTACH.match(ln.strip())
        and not _DISABLE.match(ln.strip())
    ]


# -- XML replies -------------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml(text: str) -> ET.Element:
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ValueError("the reply declares a DTD or entities: refused")
    try:
        return ET.fromstring(text)  # noqa: S314 - no DTD/entities (checked above)
    except ET.ParseError as exc:
        raise ValueError(f"the reply is not XML: {exc}") from None


def _find_all(root: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in root.iter() if _local(e.tag) == name]


def _child_text(elem: ET.Element, name: str) -> str | None:
    for c in elem:
        if _local(c.tag) == name:
            return (c.text or "").strip()
    return None


# the XML helpers, for the SRX parser beside this one
xml_root = _xml
find_all = _find_all
child_text = _child_text


def config_text(reply: str) -> str:
    """The text of `<configuration-set>` (or `<configuration-text>`) in a get-configuration
    reply."""
    root = _xml(reply)
    for name in ("configuration-set", "configuration-text"):
        found = _find_all(root, name)
        if found:
            return (found[0].text or "").strip("\n") + "\n"
    raise ValueError("no configuration-set or configuration-text in the reply")


def interfaces(reply: str) -> tuple[InterfaceState, ...]:
    """Physical and logical interfaces of a `<get-interface-information>` reply, by name, with
    their admin and oper state (`up`/`down`) and, for physical ones, their SNMP index."""
    root = _xml(reply)
    out: list[InterfaceState] = []
    for phys in _find_all(root, "physical-interface"):
        name = _child_text(phys, "name")
        admin = _child_text(phys, "admin-status")
        oper = _child_text(phys, "oper-status")
        if not name or admin not in ("up", "down"):
            raise ValueError(f"physical-interface without name or admin-status: {name!r}")
        index = _child_text(phys, "snmp-index")
        out.append(
            InterfaceState(
                name=name,
                admin_up=admin == "up",
                oper_up=None if oper is None else oper == "up",
                index=int(index) if index and index.isdigit() else None,
            )
        )
        for logical in (c for c in phys if _local(c.tag) == "logical-interface"):
            lname = _child_text(logical, "name")
            ladmin = _child_text(logical, "admin-status")
            loper = _child_text(logical, "oper-status")
            if not lname or ladmin not in ("up", "down"):
                raise ValueError(f"logical-interface without name or admin-status: {lname!r}")
            out.append(
                InterfaceState(
                    name=lname,
                    admin_up=ladmin == "up" and admin == "up",
                    oper_up=None if loper is None else loper == "up",
                )
            )
    return tuple(out)


def counters(reply: str) -> dict[str, int]:
    """`FILTER/COUNTER` -> packets, for the CORDON- filters of a
    `<get-firewall-filter-information>` reply."""
    root = _xml(reply)
    out: dict[str, int] = {}
    for finfo in _find_all(root, "filter-information"):
        fname = _child_text(finfo, "filter-name") or ""
        if not fname.startswith(PREFIX):
            continue
        for counter in (c for c in finfo if _local(c.tag) == "counter"):
            cname = _child_text(counter, "counter-name")
            packets = _child_text(counter, "packet-count")
            if not cname or packets is None or not packets.isdigit():
                raise ValueError(f"counter of {fname} without name or packet count")
            out[f"{fname}/{cname}"] = int(packets)
    return out


def rpc_errors(reply: str) -> list[tuple[str, str, str]]:
    """(severity, path, message) of every `<rpc-error>` in a reply, in order."""
    root = _xml(reply)
    out = []
    for err in _find_all(root, "rpc-error"):
        out.append(
            (
                _child_text(err, "error-severity") or "error",
                _child_text(err, "error-path") or "",
                _child_text(err, "error-message") or "(no message)",
            )
        )
    return out


def pending_confirm(reply: str) -> str | None:
    """The log of the commit a `<get-commit-information>` reply shows as waiting for its
    confirmation (its comment says `commit confirmed, rollback in ...`), None when none does."""
    root = _xml(reply)
    for entry in _find_all(root, "commit-history"):
        comment = _child_text(entry, "comment") or ""
        if "commit confirmed, rollback in" in comment:
            return _child_text(entry, "log") or ""
    return None


def newest_log(reply: str) -> str | None:
    """The log message of the newest commit in a `<get-commit-information>` reply."""
    root = _xml(reply)
    entries = _find_all(root, "commit-history")
    return (_child_text(entries[0], "log") or "") if entries else None


def lines_valid(lines: Iterable[str]) -> list[str]:
    """The lines that are not one printable line each (a newline, a NUL, a control character
    would smuggle in another statement)."""
    return [ln for ln in lines if not ln.isprintable()]
