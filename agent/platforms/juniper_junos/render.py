"""Owns the juniper_junos renderer: interface `disable` lines and an isolation state's packet rules
as Junos stateless firewall filters (`firewall family inet filter CORDON-...`, one term per rule
named with its id, applied to the routed interfaces), in Junos `set` syntax; the exact names the
read-back expects; the counter a counting rule is read by. Pure: imports the plan's state types.

Where a rule goes. Cordon's rules are one first-match list over forwarded packets with an ingress
(`iif`) and an egress (`oif`) interface. A Junos filter is attached to one interface and one
direction, so the list is evaluated in two stages, both of which must accept:
- every egress interface named by a rule gets an OUTPUT filter holding, in Cordon's order, the
  rules whose `oif` is it or unset, their ingress matched with `from interface X`: exact;
- every ingress interface named by a rule without `oif` (a cut: drop all that comes in) gets an
  INPUT filter holding, in order, the rules with that `iif` and no `oif`, and the accepts with that
  `iif` whatever their `oif` (they pass the packet on to the egress stage, which decides). The
  input filter also stops traffic to the device itself, as the nftables renderer's input chain.
A packet that an accept of a kept flow lets past the input stage but that the device routes out
of another interface than that flow's is decided by that interface's output filter, if it has
one: the two stages equal Cordon's list for every packet routed as the inventory's paths say.

Stateless replies: a reply accept (`NftRule.reply`) matches `tcp-established` (TCP ACK or RST
set) from the service's address and port to the client's. It lets through any TCP segment with
ACK or RST from that port to that client, whether or not the client opened a connection (an ACK
scan from the server's service port passes); a segment with SYN alone (a connection the server
side opens) does not. A counting rule (`count`) counts `tcp-initial` segments (SYN without ACK:
new connections) and goes on (`next term`). Every filter ends with an explicit accept (Junos ends
each filter with an implicit discard; Cordon's list defaults to accept)."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable

from agent.network.state import DeviceState, NftRule
from agent.platforms.juniper_junos import METHOD as METHOD  # noqa: PLC0414 (the registration owns it)
from agent.platforms.juniper_junos import PREFIX as PREFIX  # noqa: PLC0414

DEFAULT_TERM = "cordon-default"

# Junos interface names Cordon renders: a device name (`ge-0/0/1`, `xe-0/1/0:2`, `irb`, `ae0`,
# `me0`, `vlan`) with an optional logical unit (`.110`). Nothing else reaches a command line: no
# space, quote, semicolon, brace or newline can.
_IFNAME = re.compile(
    r"^(?P<ifd>[a-z]{2,5}(?:-\d{1,2}/\d{1,2}/\d{1,3}(?::\d{1,2})?|\d{0,4}))(?:\.(?P<unit>\d{1,5}))?$"
)


def split_ifname(name: str) -> tuple[str, str | None]:
    """(`ge-0/0/1`, `5`) of `ge-0/0/1.5`; ValueError for a name that is not a Junos interface."""
    m = _IFNAME.match(name)
    if m is None:
        raise ValueError(
            f"{name!r} is not a Junos interface name Cordon renders (like ge-0/0/1, "
            "xe-0/1/0:2, ae0, irb.110)"
        )
    return m.group("ifd"), m.group("unit")


def valid_ifname(name: str) -> bool:
    return _IFNAME.match(name) is not None


def _unit_path(name: str) -> str:
    """`interfaces irb unit 110` for `irb.110`; unit 0 when the name has none (`ge-0/0/47`)."""
    ifd, unit = split_ifname(name)
    return f"interfaces {ifd} unit {unit or '0'}"


# -- interface disable ---------------------------------------------------------------------------


def disable_lines(interfaces: list[str], *, down: bool) -> list[str]:
    """`set interfaces X disable` (down) or `delete interfaces X disable`; a logical unit is
    disabled at its unit (`set interfaces irb unit 110 disable`)."""
    verb = "set" if down else "delete"
    out = []
    for name in sorted(interfaces):
        ifd, unit = split_ifname(name)
        where = f"interfaces {ifd}" + (f" unit {unit}" if unit is not None else "")
        out.append(f"{verb} {where} disable")
    return out


# -- filters ---------------------------------------------------------------------------------------


def rule_id(rule: NftRule) -> str:
    """A short stable id of a rule's match and verdict (the nftables renderer's, same key)."""
    return hashlib.sha256(repr(rule.id_key()).encode()).hexdigest()[:8]


def term_name(rule: NftRule) -> str:
    return f"r{rule_id(rule)}"


def filter_name(interface: str, direction: str) -> str:
    """`CORDON-irb_110-OUT` for irb.110's output filter (`/`, `.` and `:` become `_`: no Junos
    interface name holds `_`, so distinct interfaces get distinct filters)."""
    split_ifname(interface)
    return f"{PREFIX}{re.sub(r'[/.:]', '_', interface)}-{'IN' if direction == 'input' else 'OUT'}"


def _check(rule: NftRule) -> None:
    if rule.iif is None and rule.oif is None:
        raise ValueError(f"rule {term_name(rule)} names no interface: Junos filters need one")
    for name in (rule.iif, rule.oif):
        if name is not None:
            split_ifname(name)
    for addr in (rule.saddr, rule.daddr):
        if addr is not None:
            ipaddress.ip_network(addr, strict=False)
    for port in (rule.sport, rule.dport):
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"rule {term_name(rule)}: port {port} out of range")


def placement(state: DeviceState) -> list[tuple[str, str, list[NftRule]]]:
    """(interface, direction, rules in order) of every filter a state needs, in a stable order:
    output filters of the egress interfaces named, then input filters of the cut ingresses."""
    rules = state.ordered_rules()
    for r in rules:
        _check(r)
    out: list[tuple[str, str, list[NftRule]]] = []
    for e in sorted({r.oif for r in rules if r.oif}):
        out.append((e, "output", [r for r in rules if r.oif in (None, e)]))
    for x in sorted({r.iif for r in rules if r.iif and r.oif is None}):
        kept = [r for r in rules if r.iif == x and (r.oif is None or r.verdict == "accept")]
        out.append((x, "input", kept))
    return out


def _term_lines(fname: str, rule: NftRule, direction: str) -> list[str]:
    head = f"set firewall family inet filter {fname} term {term_name(rule)}"
    frm: list[str] = []
    if direction == "output" and rule.iif:
        frm.append(f"interface {rule.iif}")
    if rule.saddr:
        frm.append(f"source-address {ipaddress.ip_network(rule.saddr, strict=False)}")
    if rule.daddr:
        frm.append(f"destination-address {ipaddress.ip_network(rule.daddr, strict=False)}")
    tcp = rule.sport is not None or rule.dport is not None or rule.reply or rule.verdict == "count"
    if tcp:
        frm.append("protocol tcp")
    if rule.sport is not None:
        frm.append(f"source-port {rule.sport}")
    if rule.dport is not None:
        frm.append(f"destination-port {rule.dport}")
    if rule.reply:
        frm.append("tcp-established")
    if rule.verdict == "count":
        frm.append("tcp-initial")
    then = {"accept": ["accept"], "drop": ["discard"], "count": ["next term"]}[rule.verdict]
    lines = [f"{head} from {m}" for m in frm]
    lines.append(f"{head} then count {term_name(rule)}")
    lines += [f"{head} then {t}" for t in then]
    return lines


def filters_script(state: DeviceState) -> str:
    """The `set` lines of Cordon's whole filter configuration for `state` (none for a state
    without rules): the driver first deletes every CORDON- filter and attachment the device
    has, then loads these, and commits both as one change."""
    lines: list[str] = []
    for iface, direction, rules in placement(state):
        fname = filter_name(iface, direction)
        for r in rules:
            lines += _term_lines(fname, r, direction)
        lines.append(f"set firewall family inet filter {fname} term {DEFAULT_TERM} then accept")
        lines.append(f"set {_unit_path(iface)} family inet filter {direction} {fname}")
    return "\n".join(lines) + ("\n" if lines else "")


def attachment(interface: str, direction: str, fname: str) -> str:
    """The read-back name of a filter attached to a logical interface: `@irb.110 output F`
    (`@ge-0/0/47.0 input F` for `ge-0/0/47`: filters attach to a unit, 0 when none is named)."""
    ifd, unit = split_ifname(interface)
    return f"@{ifd}.{unit or '0'} {direction} {fname}"


def filter_names(state: DeviceState) -> frozenset[str]:
    """Every name the device shows once it holds `state`'s filters: `FILTER/TERM` per term (the
    default one included) and one `@interface direction FILTER` per attachment."""
    out: set[str] = set()
    for iface, direction, rules in placement(state):
        fname = filter_name(iface, direction)
        out |= {f"{fname}/{term_name(r)}" for r in rules}
        out.add(f"{fname}/{DEFAULT_TERM}")
        out.add(attachment(iface, direction, fname))
    return frozenset(out)


def counted_as(rule: NftRule) -> str:
    """The counter a counting rule's packets are read by: `FILTER/TERM` of its egress filter
    (its ingress one when it has no egress)."""
    if rule.oif:
        return f"{filter_name(rule.oif, 'output')}/{term_name(rule)}"
    assert rule.iif is not None
    return f"{filter_name(rule.iif, 'input')}/{term_name(rule)}"


def interfaces_of(rules: Iterable[NftRule]) -> set[str]:
    return {i for r in rules for i in (r.iif, r.oif) if i}
