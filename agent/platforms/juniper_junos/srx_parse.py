"""Owns the juniper_srx read-back parsers: Cordon's own statements in a `set`-format configuration
(its CORDON- global address-book entries, applications and security policies) and the names they
show (`srx_render.comments`' form), the deletes that remove them, the device's zones (unit ->
zone) and each zone pair's first policy of the site's, whether Cordon's policies come first in
every pair, a `<get-security-policies-hit-count>` reply, and a backup's own lines.
Pure: imports the renderer's names and the Junos parser's XML helpers; raises ValueError on
unparseable input."""

from __future__ import annotations

import re

from agent.platforms.juniper_junos import parse
from agent.platforms.juniper_junos.srx_render import PREFIX, count_key

_ADDRESS = re.compile(
    rf"^set security address-book global address (?P<name>{PREFIX}\S+) (?P<net>\S+)$"
)
_APP = re.compile(
    rf"^set applications application (?P<name>{PREFIX}\S+) "
    r"(?P<key>protocol|destination-port) (?P<value>\S+)$"
)
_POLICY = re.compile(
    r"^set security policies from-zone (?P<a>\S+) to-zone (?P<b>\S+) policy (?P<name>\S+)"
    r"(?: (?P<rest>.*))?$"
)
_ZONE_IF = re.compile(r"^set security zones security-zone (?P<zone>\S+) interfaces (?P<ifl>[^\s]+)")
_ZONE = re.compile(r"^set security zones security-zone (?P<zone>\S+)(?: |$)")


def _lines(config: str) -> list[str]:
    return [ln.strip() for ln in config.splitlines() if ln.strip()]


def _mine(ln: str) -> bool:
    if _ADDRESS.match(ln) or _APP.match(ln):
        return True
    m = _POLICY.match(ln)
    return m is not None and m.group("name").startswith(PREFIX)


def ours(config: str) -> str:
    """Cordon's own statements of a `set`-format configuration, in its order."""
    keep = [ln for ln in _lines(config) if _mine(ln)]
    return "\n".join(keep) + ("\n" if keep else "")


def names_listed(text: str) -> list[str]:  # noqa: PLR0912 - one branch per statement kind
    """The names Cordon's statements show (`address N NET`, `application N tcp PORT`,
    `policy N match SRC DST APP then ACTION`), in the order they first appear, each once. A
    policy incomplete in a zone pair shows `?` where a part is missing (never equal to a name
    the renderer makes)."""
    apps: dict[str, dict[str, str]] = {}
    pols: dict[tuple[str, str, str], dict[str, str]] = {}
    order: list[tuple[str, object]] = []
    out: list[str] = []
    for ln in _lines(text):
        if m := _ADDRESS.match(ln):
            order.append(("line", f"address {m.group('name')} {m.group('net')}"))
        elif m := _APP.match(ln):
            if m.group("name") not in apps:
                order.append(("app", m.group("name")))
            apps.setdefault(m.group("name"), {})[m.group("key")] = m.group("value")
        elif (m := _POLICY.match(ln)) and m.group("name").startswith(PREFIX):
            key = (m.group("a"), m.group("b"), m.group("name"))
            if key not in pols:
                order.append(("policy", key))
            part = pols.setdefault(key, {})
            words = (m.group("rest") or "").split()
            if len(words) == 3 and words[0] == "match":
                part[words[1]] = words[2]
            elif len(words) == 2 and words[0] == "then":
                part["then"] = words[1]
            else:
                part["?"] = " ".join(words)
    for kind, item in order:
        if kind == "line":
            name = str(item)
        elif kind == "app":
            a = apps[str(item)]
            name = f"application {item} {a.get('protocol', '?')} {a.get('destination-port', '?')}"
        else:
            assert isinstance(item, tuple)
            p = pols[item]
            name = (
                f"policy {item[2]} match {p.get('source-address', '?')} "
                f"{p.get('destination-address', '?')} {p.get('application', '?')} "
                f"then {p.get('then', '?')}" + (f" ? {p['?']}" if "?" in p else "")
            )
        if name not in out:
            out.append(name)
    return out


def names_in(text: str) -> frozenset[str]:
    return frozenset(names_listed(text))


def delete_lines(text: str) -> list[str]:
    """The `delete` lines that remove every CORDON- object in `text`: policies first, then what
    they referred to."""
    pols: list[str] = []
    objs: list[str] = []
    for ln in _lines(text):
        if m := _POLICY.match(ln):
            cmd = (
                f"delete security policies from-zone {m.group('a')} to-zone {m.group('b')} "
                f"policy {m.group('name')}"
            )
            if m.group("name").startswith(PREFIX) and cmd not in pols:
                pols.append(cmd)
        elif m := _ADDRESS.match(ln):
            cmd = f"delete security address-book global address {m.group('name')}"
            if cmd not in objs:
                objs.append(cmd)
        elif m := _APP.match(ln):
            cmd = f"delete applications application {m.group('name')}"
            if cmd not in objs:
                objs.append(cmd)
    return pols + objs


def zones(config: str) -> dict[str, str]:
    """Logical interface -> security zone, from `security zones security-zone Z interfaces X`
    (a name without a unit is unit 0). ValueError when one interface is in two zones."""
    out: dict[str, str] = {}
    for ln in _lines(config):
        if m := _ZONE_IF.match(ln):
            ifl = m.group("ifl")
            unit = ifl if "." in ifl else f"{ifl}.0"
            if out.get(unit, m.group("zone")) != m.group("zone"):
                raise ValueError(f"interface {unit} is in two security zones")
            out[unit] = m.group("zone")
    return out


def zone_names(config: str) -> list[str]:
    """Every security zone the configuration defines (with or without interfaces)."""
    out: list[str] = []
    for ln in _lines(config):
        if (m := _ZONE.match(ln)) and m.group("zone") not in out:
            out.append(m.group("zone"))
    return out


def pair_order(config: str) -> dict[tuple[str, str], list[str]]:
    """(from-zone, to-zone) -> its policies' names in evaluation (configuration) order."""
    out: dict[tuple[str, str], list[str]] = {}
    for ln in _lines(config):
        if m := _POLICY.match(ln):
            names = out.setdefault((m.group("a"), m.group("b")), [])
            if m.group("name") not in names:
                names.append(m.group("name"))
    return out


def first_site(config: str) -> dict[tuple[str, str], str]:
    """Each zone pair's first policy that is not Cordon's (pairs with none absent)."""
    out = {}
    for pair, names in pair_order(config).items():
        site = [n for n in names if not n.startswith(PREFIX)]
        if site:
            out[pair] = site[0]
    return out


def misplaced(config: str) -> list[str]:
    """The zone pairs where one of the site's policies comes before one of Cordon's (Cordon's
    would not decide first), as `from>to`."""
    out = []
    for (a, b), names in sorted(pair_order(config).items()):
        mine = [i for i, n in enumerate(names) if n.startswith(PREFIX)]
        site = [i for i, n in enumerate(names) if not n.startswith(PREFIX)]
        if mine and site and min(site) < max(mine):
            out.append(f"{a}>{b}")
    return out


def config_lines(text: str) -> list[str]:
    """A backup's lines apart from what isolation changes (Cordon's objects, interface
    `disable`) and the header lines that change by themselves."""
    return [ln for ln in parse.config_lines(text) if not _mine(ln.strip())]


def hit_counts(reply: str) -> dict[str, int]:
    """Cordon's counter key (`CORDON-r<id>`) -> sessions its policies matched, summed over
    zone pairs and over a count rule's policies, from a `<get-security-policies-hit-count>`
    reply (`policy-hit-count-entry`: policy name, zones, count)."""
    root = parse.xml_root(reply)
    out: dict[str, int] = {}
    for entry in parse.find_all(root, "policy-hit-count-entry"):
        name = parse.child_text(entry, "policy-hit-count-policy-name") or ""
        count = parse.child_text(entry, "policy-hit-count-count")
        key = count_key(name)
        if key is None:
            continue
        if count is None or not count.isdigit():
            raise ValueError(f"hit count of {name} is not a number: {count!r}")
        out[key] = out.get(key, 0) + int(count)
    return out
