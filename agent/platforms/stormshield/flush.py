"""Owns which connection states a Stormshield cut flushes. SNS filtering is stateful: a rule is
looked up for a connection's first packet only, so a connection open before a cut goes on
through it unless its state is flushed. serverd's `MONITOR FLUSH STATE <ip>` (CLI/serverd
reference guide, v4: "Flush ASQ state (host, connection, fragment, ...)", level mon_write) flushes
the states of ONE host, so the driver names hosts, and which ones is decided here, from the
change's own lines and the device's interfaces in the inventory:

- only the `block` rules a change adds (a comment the active policy did not hold before) flush:
  a rollback or a change that only opens flushes nothing, and a re-run of the same cut none;
- a block rule naming a host (`srctarget`/`dsttarget`) flushes that host;
- a block rule naming interfaces only flushes every address of the connected subnet of each
  interface it names; a side left `any` stands for every interface of the device (a connection
  leaving by the named interface has its local end behind any other one);
- bounded: a connected subnet larger than a /24 (MAX_PREFIX) is not enumerated, and is reported
  as not flushed (`Flush.skipped`); an interface without an address in the inventory (a trunk
  parent, the out-of-band management port) has no subnet to flush;
- never flushed: an address a `pass` rule of the new policy names (a must-survive flow's ends:
  their open connections go on; the price is that a must-survive host's OTHER open connections
  go on too) and the device's own addresses (its management sessions).

Only the hosts that hold states are flushed (`narrow`): once the new policy is active, the driver
reads the appliance's connection table once (`MONITOR CONNECTION`, CLI/serverd reference guide,
v4: one `section_line` row per connection with its `src` and `dst` addresses) and flushes the
wanted hosts that appear in it, an end of at least one connection. A connection opened after the
activation met the new rules already; one opened before it is in the table until its state goes.
Safety before speed: when the read fails, its answer cannot be understood, or it may be cut short
(as many rows as the `maxcount` asked: MAXCOUNT), every wanted host is flushed (one command each,
the slow path) and the change's output says why.

Every address is a parsed IPv4Address before it becomes a command: nothing else reaches serverd.
Pure: imports the inventory's types."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from agent.platforms.stormshield import render

MAX_PREFIX = 24  # the largest subnet (smallest prefix length) enumerated host by host
COMMAND = "MONITOR FLUSH STATE"
MAXCOUNT = 100000  # rows asked of the connection table; as many back means perhaps cut short
LISTING = f"MONITOR CONNECTION state=all maxcount={MAXCOUNT}"
_TOKEN = re.compile(r'(?P<k>[a-z]+)=(?:"(?P<q>[^"]*)"|(?P<b>\S+))')


@dataclass(frozen=True)
class Flush:
    """The hosts whose states a change flushes, in address order, and what it leaves."""

    hosts: tuple[ipaddress.IPv4Address, ...]
    skipped: tuple[str, ...] = ()  # subnets too large to enumerate (not flushed)
    kept: tuple[ipaddress.IPv4Address, ...] = ()  # must-survive ends inside a flushed range
    wanted: int | None = None  # set by `narrow`: how many hosts the cut wanted flushed
    unread: str | None = None  # set by `narrow`: why the connection table was not used

    def commands(self) -> list[str]:
        return [command(h) for h in self.hosts]

    def summary(self) -> str:
        out = f"connection states flushed for {len(self.hosts)} host(s)"
        if self.unread is not None:
            out += (
                f" (every host the cut wants flushed: the connection table was not used, "
                f"{self.unread})"
            )
        elif self.wanted is not None:
            out += (
                f" (of {self.wanted} the cut wants flushed, those holding states in "
                "MONITOR CONNECTION)"
            )
        if self.kept:
            out += f"; kept (a must-survive flow's end): {', '.join(map(str, self.kept))}"
        if self.skipped:
            out += (
                f"; NOT flushed (subnet larger than /{MAX_PREFIX}: its open connections go on): "
                + ", ".join(self.skipped)
            )
        return out


def command(host: ipaddress.IPv4Address | str) -> str:
    """The serverd command that flushes one host's states; ValueError for anything but a
    unicast IPv4 address."""
    addr = ipaddress.IPv4Address(str(host))
    if addr.is_multicast or addr.is_unspecified or addr == ipaddress.IPv4Address(0xFFFFFFFF):
        raise ValueError(f"{addr} is not a host address")
    return f"{COMMAND} {addr}"


def tokens(line: str) -> dict[str, str]:
    """The key=value tokens of one of Cordon's rule or object lines."""
    return {
        m.group("k"): m.group("q") if m.group("q") is not None else m.group("b")
        for m in _TOKEN.finditer(line)
    }


def hosts_of(objects: Iterable[str]) -> dict[str, ipaddress.IPv4Address]:
    """Host object name -> address, from a change's `CONFIG OBJECT HOST NEW` lines."""
    out = {}
    for ln in objects:
        if ln.startswith("CONFIG OBJECT HOST NEW "):
            t = tokens(ln)
            out[t["name"]] = ipaddress.IPv4Address(t["ip"])
    return out


def plan(
    rules: Sequence[str],
    objects: Sequence[str],
    before: frozenset[str],
    interfaces: Mapping[str, ipaddress.IPv4Interface | None],
) -> Flush:
    """The flush of a change whose wanted rule lines are `rules` (INSERT lines), with object
    lines `objects`, on a device whose active policy held Cordon rule comments `before` and
    whose interfaces (inventory name -> address or None) are `interfaces`. ValueError when a
    rule names a host object the change does not define (nothing is sent then)."""
    named = hosts_of(objects)

    def host(value: str) -> ipaddress.IPv4Address | None:
        if value == "any":
            return None
        if value not in named:
            raise ValueError(f"rule target {value!r} is not a host object of this change")
        return named[value]

    own = {i.ip for i in interfaces.values() if i is not None}
    keep: set[ipaddress.IPv4Address] = set()
    parsed = [tokens(ln) for ln in rules if ln.startswith(render.INSERT)]
    for t in parsed:
        if t.get("action") == "pass":
            keep |= {h for h in (host(t["srctarget"]), host(t["dsttarget"])) if h is not None}
    wanted: set[ipaddress.IPv4Address] = set()
    skipped: set[str] = set()
    for t in parsed:
        if t.get("action") != "block" or t.get("comment") in before:
            continue
        targets = {h for h in (host(t["srctarget"]), host(t["dsttarget"])) if h is not None}
        if targets:
            wanted |= targets
            continue
        sides = [t.get("srcif", "any"), t.get("dstif", "any")]
        names = sorted(interfaces) if "any" in sides else sorted(set(sides))
        for name in names:
            addr = interfaces.get(name)
            if addr is None:
                continue
            if addr.network.prefixlen < MAX_PREFIX:
                skipped.add(str(addr.network))
                continue
            wanted |= set(addr.network.hosts())
    kept = tuple(sorted(wanted & keep))
    hosts = tuple(sorted(wanted - keep - own))
    for h in hosts:
        command(h)  # refuses what is not a host address
    return Flush(hosts=hosts, skipped=tuple(sorted(skipped)), kept=kept)


def holding(rows: Sequence[Mapping[str, str]] | None) -> frozenset[ipaddress.IPv4Address]:
    """The IPv4 addresses that are an end of a connection of `MONITOR CONNECTION`'s rows (None:
    the answer held no `section_line` data). ValueError when the rows cannot be understood (a
    row without a `src` or `dst` address) or may be cut short (MAXCOUNT rows or more)."""
    if rows is None:
        raise ValueError("no section_line data in the answer")
    if len(rows) >= MAXCOUNT:
        raise ValueError(f"{len(rows)} rows for maxcount={MAXCOUNT}: perhaps cut short")
    out: set[ipaddress.IPv4Address] = set()
    for n, row in enumerate(rows, 1):
        for key in ("src", "dst"):
            try:
                addr = ipaddress.ip_address(row.get(key, ""))
            except ValueError:
                raise ValueError(f"row {n}: {key}={row.get(key)!r} is not an IP address") from None
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped  # an IPv4 connection written the IPv6 way
            if isinstance(addr, ipaddress.IPv4Address):
                out.add(addr)
    return frozenset(out)


def narrow(plan: Flush, held: frozenset[ipaddress.IPv4Address] | str) -> Flush:
    """`plan` limited to the hosts holding states (`held`, from `holding`); when `held` is a
    reason instead (the table could not be read or understood), `plan` whole, saying why."""
    if isinstance(held, str):
        return replace(plan, wanted=len(plan.hosts), unread=held)
    return replace(plan, hosts=tuple(h for h in plan.hosts if h in held), wanted=len(plan.hosts))
