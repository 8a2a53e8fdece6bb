"""Owns the juniper_srx renderer: an isolation state's packet rules as Junos SRX security
policies (`security policies from-zone A to-zone B policy CORDON-...`), with the global
address-book entries and TCP applications they match (every name starting with `CORDON-`);
the exact names the read-back expects; the key a counting rule's hit counts are summed under;
and the expansion (`expand`) of the plan's zone-free lines into Junos `set`/`insert` statements
once the device's zones are known. Pure: imports the plan's state types.

Script lines (what the plan shows; zone-free, the driver expands them):

    address CORDON-h-198.18.91.10 198.18.91.10/32
    application CORDON-tcp-2575 tcp 2575
    policy CORDON-r1a2b3c4d from ge-0/0/1.20 to ge-0/0/1.30 match CORDON-h-198.18.91.10 \
CORDON-h-198.18.92.10 CORDON-tcp-2575 then permit

Zones. An SRX policy names zones, not interfaces; every interface belongs to one security zone,
and which is the device's own configuration (`security zones security-zone Z interfaces IFL`),
the site's choice that Cordon must not change (moving an interface between zones rewrites every
site policy that applies to it). So the zones are READ from the device when the change is sent,
never declared in the inventory (a declared copy would drift from the device silently, and a
policy rendered for a wrong zone pair never matches): the driver reads the candidate
configuration, maps each interface Cordon names to its zone, and `expand`s. It refuses (nothing
is sent) when an interface is in no zone, or shares its zone with another interface: a zone
policy for one interface would then also act on the other, which Cordon's rule does not say.
An unset interface (`any`) is every zone the device has.

Semantics. SRX is flow based: a policy is looked up for the first packet of a session only;
the replies of a permitted session pass by the session table. A reply accept (`NftRule.reply`)
therefore renders to NOTHING (as for FortiOS, `agent.platforms.fortigate.render`): the request
policy of its flow, placed before the drops, opens the session; a server that opens a connection
back meets the drops (the planner always cuts both ways). Policies of a zone pair are evaluated
in configuration order, first match wins; Cordon's come first in every pair, in Cordon's order,
placed with `insert ... before policy <the site's first>` (Juniper, "Reordering Security
Policies": new policies go to the end of the list). A drop is `then deny` (silent, like nft's
drop). A `count` rule has no verdict in nftables; an SRX policy always has one. It becomes, in its
place, one policy per later rule its match overlaps, with that rule's action
(`CORDON-r<count id>-<rule id>`), stopping at a later rule that covers it whole; what no later
Cordon rule covers goes on to the site's policies, uncounted. Its counter is the sum of those
policies' hit counts (`show security policies hit-count`: sessions, not packets).

Not covered: traffic to the SRX itself is governed by each zone's `host-inbound-traffic`, not by
policies; Cordon does not change it (the nft renderer's input chain has no counterpart here).
Sessions already open when a cut is committed would go on (`policy-rematch` re-evaluates the
sessions of a modified or deleted policy only): the driver clears them after the commit
(`agent.platforms.juniper_junos.srx_sessions`)."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.network.state import DeviceState, NftRule
from agent.platforms.fortigate.render import overlap
from agent.platforms.juniper_junos import PREFIX as PREFIX  # noqa: PLC0414 (the registration owns it)
from agent.platforms.juniper_junos.render import split_ifname

ANY = "any"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # a Junos zone or policy name
_POLICY = re.compile(
    rf"^policy (?P<name>{PREFIX}r[0-9a-f]{{8}}(?:-[0-9a-f]{{8}})?) from (?P<frm>\S+) "
    r"to (?P<to>\S+) match (?P<src>\S+) (?P<dst>\S+) (?P<app>\S+) then (?P<act>permit|deny)$"
)
_ADDRESS = re.compile(rf"^address (?P<name>{PREFIX}[hn]-[0-9.-]+) (?P<net>[0-9./]+)$")
_APPLICATION = re.compile(rf"^application (?P<name>{PREFIX}tcp-\d{{1,5}}) tcp (?P<port>\d{{1,5}})$")


def rule_id(rule: NftRule) -> str:
    """The 8-hex id of a rule's match and verdict (the nftables renderer's, same key)."""
    return hashlib.sha256(repr(rule.id_key()).encode()).hexdigest()[:8]


def address_name(addr: str) -> str:
    net = ipaddress.ip_network(addr, strict=False)
    if net.version != 4:
        raise ValueError(f"address {addr!r}: Cordon's SRX address-book entries are IPv4")
    if net.prefixlen == 32:
        return f"{PREFIX}h-{net.network_address}"
    return f"{PREFIX}n-{net.network_address}-{net.prefixlen}"


def application_name(port: int) -> str:
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return f"{PREFIX}tcp-{port}"


def unit_name(interface: str) -> str:
    """The logical interface a zone holds for a Cordon interface name: `ge-0/0/0.0` for
    `ge-0/0/0` (a zone holds units; unit 0 when none is named). ValueError for a name that is
    not a Junos interface."""
    ifd, unit = split_ifname(interface)
    return f"{ifd}.{unit or '0'}"


@dataclass(frozen=True)
class Policy:
    """One SRX policy Cordon owns, zone-free (`frm`/`to`: a logical interface or `any`)."""

    name: str
    frm: str
    to: str
    src: str  # an address name or `any`
    dst: str
    app: str  # an application name or `any`
    action: str  # permit | deny

    def line(self) -> str:
        return (
            f"policy {self.name} from {self.frm} to {self.to} match {self.src} {self.dst} "
            f"{self.app} then {self.action}"
        )


def _policy(rule: NftRule, name: str, action: str) -> Policy:
    if rule.sport is not None and not rule.reply:
        raise ValueError(f"rule {name}: a source port match has no SRX application here")
    return Policy(
        name=name,
        frm=unit_name(rule.iif) if rule.iif else ANY,
        to=unit_name(rule.oif) if rule.oif else ANY,
        src=address_name(rule.saddr) if rule.saddr else ANY,
        dst=address_name(rule.daddr) if rule.daddr else ANY,
        app=application_name(rule.dport) if rule.dport is not None else ANY,
        action=action,
    )


def policies(state: DeviceState) -> list[Policy]:
    """Cordon's policies for `state`, in the order they must hold (module docstring)."""
    rules = [r for r in state.ordered_rules() if not r.reply]
    out: list[Policy] = []
    for i, rule in enumerate(rules):
        rid = rule_id(rule)
        if rule.verdict != "count":
            out.append(_policy(rule, f"{PREFIX}r{rid}", _action(rule)))
            continue
        for later in rules[i + 1 :]:
            if later.verdict == "count":
                continue
            part = overlap(rule, later)
            if part is not None:
                out.append(_policy(part, f"{PREFIX}r{rid}-{rule_id(later)}", _action(later)))
                if part.fields() == rule.fields():
                    break  # it takes every session the count rule matches
    return out


def _action(rule: NftRule) -> str:
    return "permit" if rule.verdict == "accept" else "deny"


def objects(state: DeviceState) -> list[str]:
    """The script lines of `state`: addresses and applications (sorted), then policies in
    order."""
    pols = policies(state)
    used = {p.src for p in pols} | {p.dst for p in pols}
    addrs: dict[str, str] = {}
    for r in state.rules:
        for a in (r.saddr, r.daddr):
            if a and address_name(a) in used:
                addrs[address_name(a)] = str(ipaddress.ip_network(a, strict=False))
    apps = sorted({p.app for p in pols if p.app != ANY})
    return [
        *(f"address {n} {net}" for n, net in sorted(addrs.items())),
        *(f"application {a} tcp {a.rsplit('-', 1)[1]}" for a in apps),
        *(p.line() for p in pols),
    ]


def script(state: DeviceState) -> str:
    """The whole desired set of Cordon's SRX objects for `state` (none: every CORDON- object
    goes). Raises ValueError on an interface name or address Junos would not take."""
    lines = objects(state)
    return "\n".join(lines) + ("\n" if lines else "")


def shown(line: str) -> str:
    """The read-back name of one script line (a policy's interfaces dropped)."""
    if m := _POLICY.match(line):
        return (
            f"policy {m.group('name')} match {m.group('src')} {m.group('dst')} "
            f"{m.group('app')} then {m.group('act')}"
        )
    return line


def comments(state: DeviceState) -> frozenset[str]:
    """Every name the device shows once it holds `state`: one per address, application and
    policy (its name, match and action; the same in every zone pair it is in)."""
    return frozenset(shown(ln) for ln in objects(state))


def counted_as(rule: NftRule) -> str:
    """The key a count rule's hit counts are summed under: its policies' common name."""
    return f"{PREFIX}r{rule_id(rule)}"


def count_key(policy_name: str) -> str | None:
    """The counter key of one of Cordon's policies (`CORDON-r<id>` of `CORDON-r<id>[-<id>]`)."""
    m = re.match(rf"^({re.escape(PREFIX)}r[0-9a-f]{{8}})(?:-[0-9a-f]{{8}})?$", policy_name)
    return m.group(1) if m else None


# -- the script lines, checked, and expanded once the device's zones are known -----------------


def check_line(line: str) -> str:
    """`address`, `application` or `policy` for a well-formed script line; ValueError else (no
    other word reaches the device: names, addresses and ports are checked character by
    character)."""
    if m := _ADDRESS.match(line):
        ipaddress.ip_network(m.group("net"), strict=True)
        if address_name(m.group("net")) != m.group("name"):
            raise ValueError(f"line {line!r}: the address's name does not match its prefix")
        return "address"
    if m := _APPLICATION.match(line):
        if application_name(int(m.group("port"))) != m.group("name"):
            raise ValueError(f"line {line!r}: the application's name does not match its port")
        return "application"
    if m := _POLICY.match(line):
        for side in ("frm", "to"):
            if m.group(side) != ANY:
                unit_name(m.group(side))
        for ref in ("src", "dst", "app"):
            value = m.group(ref)
            if value != ANY and not value.startswith(PREFIX):
                raise ValueError(f"line {line!r}: {value!r} is not one of Cordon's objects")
        return "policy"
    raise ValueError(
        f"line {line!r} is not one Cordon sends to an SRX (address, application or policy)"
    )


def expand(  # noqa: PLR0912 - one branch per line kind and check
    lines: Sequence[str],
    zones: Mapping[str, str],
    first_site: Mapping[tuple[str, str], str],
) -> list[str]:
    """Junos statements for script `lines` on a device whose logical interfaces are in `zones`
    (unit name -> zone; every zone the device has appears) and whose own first policy of each
    zone pair is `first_site[(from, to)]` (pairs without one absent): addresses, applications,
    then each policy in each zone pair it covers, then the `insert`s that put Cordon's policies
    first, in order. ValueError (nothing to send) for an interface in no zone, or sharing its
    zone with another one."""
    members: dict[str, list[str]] = {}
    for unit, zone in zones.items():
        members.setdefault(zone, []).append(unit)
    all_zones = sorted(members)
    out: list[str] = []
    placed: dict[tuple[str, str], list[str]] = {}

    def zone_of(side: str) -> list[str]:
        if side == ANY:
            return all_zones
        zone = zones.get(side)
        if zone is None:
            raise ValueError(
                f"interface {side} is in no security zone on the device: an SRX passes no "
                "traffic there, and Cordon has no zone to write its policy for"
            )
        others = sorted(u for u in members[zone] if u != side)
        if others:
            raise ValueError(
                f"security zone {zone} holds {side} and {', '.join(others)}: a policy for "
                f"{side} would also act on them; give {side} a zone of its own"
            )
        return [zone]

    for ln in lines:
        kind = check_line(ln)
        if kind == "address":
            _, name, net = ln.split()
            out.append(f"set security address-book global address {name} {net}")
        elif kind == "application":
            _, name, _, port = ln.split()
            out.append(f"set applications application {name} protocol tcp")
            out.append(f"set applications application {name} destination-port {port}")
        else:
            m = _POLICY.match(ln)
            assert m is not None
            for a in zone_of(m.group("frm")):
                for b in zone_of(m.group("to")):
                    for z in (a, b):
                        if not _NAME.match(z):
                            raise ValueError(f"zone name {z!r} is not one Cordon can write")
                    head = f"security policies from-zone {a} to-zone {b} policy {m.group('name')}"
                    out += [
                        f"set {head} match source-address {m.group('src')}",
                        f"set {head} match destination-address {m.group('dst')}",
                        f"set {head} match application {m.group('app')}",
                        f"set {head} then {m.group('act')}",
                    ]
                    if m.group("name") not in placed.setdefault((a, b), []):
                        placed[(a, b)].append(m.group("name"))
    for (a, b), names in sorted(placed.items()):
        site = first_site.get((a, b))
        if site is None:
            continue
        if not _NAME.match(site):
            raise ValueError(f"the site's policy name {site!r} is not one Cordon can write")
        out += [
            f"insert security policies from-zone {a} to-zone {b} policy {n} before policy {site}"
            for n in names
        ]
    return out
