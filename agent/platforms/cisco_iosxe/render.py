"""Owns the cisco_iosxe renderer: interface shutdown lines, and an isolation state's packet rules as
IOS-XE extended ACLs on the device's routed interfaces (SVIs `Vlan110`, routed ports), with the
exact remarks the read-back compares and the keys the soak's counters are read by.
Pure: imports the plan's state types and the error tree only.

Where a rule goes. An IOS ACL cannot match the interface a packet leaves by (or came in by) once
it is bound to another one, so each rule of the state (one first-match list over the in- and
out-interface, `agent.network.state`) is placed in ONE interface-bound ACL where both of its
interfaces are exact:
- `iif` and `oif` both given: the inbound ACL of `iif` (`ip access-group CORDON-I-... in`) with
  the destination `object-group CORDON-NET-<oif>` when `oif` is an SVI (`Vlan<N>`: its connected
  subnet is exactly what leaves by it); else the outbound ACL of `oif` with the source
  `object-group CORDON-NET-<iif>` when `iif` is an SVI (its subnet is what enters by it). Host
  addresses given by the rule are kept as well. Neither an SVI: refused. The `CORDON-NET-<if>`
  object-groups are filled by the driver from the device's own interface addresses.
- only `iif`: the inbound ACL of `iif`; only `oif`: the outbound ACL of `oif`.
A packet crosses the inbound ACL of its in-interface and the outbound ACL of its out-interface:
both must permit. Within one ACL the state's order is kept (declared accepts, counters,
whole-zone accepts, drops; first match). The split equals the state's single first-match list
unless an accept sits in one ACL and a drop that the same packets can match sits in the other:
such a state is refused (PlanError), as is a counter followed in its ACL by a drop it overlaps.

Replies. IOS ACLs are stateless: a reply accept (`NftRule.reply`: from the service's port back
to the client) is `permit tcp <server> eq <port> <client> established`, and `established`
matches any TCP segment with ACK or RST set. It lets through every packet of a connection the
client opened (from the SYN-ACK on), including one open before the ACL was applied; it refuses
a SYN from the server's side, so the server cannot OPEN a connection to the client. It does not
check that a connection exists: a forged ACK or RST, or an unsolicited SYN-ACK, from the
server's address and port reaches the client (which answers it with a reset). nftables'
connection tracking refuses those; this is the difference.

Counters. A `count` rule (new connections, nftables `ct state new counter`) is
`permit tcp <match> match-all +syn -ack`: it counts TCP connection openings (SYN without ACK;
retransmitted SYNs count again) and permits them, which is the state's verdict because its
ACL holds no overlapping drop after it (checked). Other protocols are not counted.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass

from agent.errors import PlanError
from agent.network.state import DeviceState, NftRule

# The first line of a rules script: the driver recognizes a whole-state script by it (an IOS
# configuration-mode comment: the device ignores it).
SCRIPT_HEAD = "! cordon acl state"
PREFIX = "CORDON"
NET_PREFIX = "CORDON-NET-"
REMARK_MAX = 100  # IOS-XE: a remark is at most 100 characters
_SVI = re.compile(r"^Vlan\d{1,4}$")
# An interface name Cordon writes into a device CLI: letters, digits, '/', '.', ':', '-' only.
_IFNAME = re.compile(r"^[A-Za-z][A-Za-z0-9/.:-]{0,47}$")
_TAG_SAFE = re.compile(r"[^A-Za-z0-9 .:,/_#=+@()-]")


def check_interface(name: str) -> str:
    """`name` if it is safe in an IOS command line (no space, no control character); else
    ValueError naming it."""
    if not _IFNAME.match(name):
        raise ValueError(
            f"interface name {name!r} cannot be written into an IOS-XE command line "
            "(letters, digits, '/', '.', ':' and '-' only)"
        )
    return name


def shut_lines(interfaces: list[str], *, down: bool) -> list[str]:
    """`interface X` / `shutdown` (or `no shutdown`) for each interface, in name order."""
    out: list[str] = []
    for name in sorted(interfaces):
        out += [f"interface {check_interface(name)}", "shutdown" if down else "no shutdown"]
    return out


def acl_token(interface: str) -> str:
    """An interface name as part of an ACL or object-group name (`Gi1/0/48` -> `Gi1_0_48`)."""
    return re.sub(r"[/.:]", "_", check_interface(interface))


def net_group(interface: str) -> str:
    """The object-group holding the networks connected to `interface` (filled by the driver)."""
    return NET_PREFIX + acl_token(interface)


def rule_id(rule: NftRule) -> str:
    """A short stable id of a rule's match and verdict (as the nftables renderer's)."""
    return hashlib.sha256(repr(rule.id_key()).encode()).hexdigest()[:8]


def remark(rule: NftRule) -> str:
    """The remark above a rule's entry: the read-back's key and the counters' key."""
    tag = _TAG_SAFE.sub("?", rule.tag)
    return f"{PREFIX} #{rule_id(rule)} {tag}".rstrip()[:REMARK_MAX]


def counted_as(rule: NftRule) -> str:
    return remark(rule)


@dataclass(frozen=True)
class Placed:
    """One rule in one interface-bound ACL, with the object-groups standing for its interfaces."""

    rule: NftRule
    interface: str
    direction: str  # "in" | "out"
    src_group: str | None = None
    dst_group: str | None = None


def _is_svi(name: str) -> bool:
    return bool(_SVI.match(name))


def place(rule: NftRule) -> Placed:
    """The ACL where `rule`'s two interfaces are both exact (see the module docstring)."""
    if rule.iif and rule.oif:
        if _is_svi(rule.oif):
            return Placed(rule, rule.iif, "in", dst_group=net_group(rule.oif))
        if _is_svi(rule.iif):
            return Placed(rule, rule.oif, "out", src_group=net_group(rule.iif))
        raise PlanError(
            f"an IOS-XE ACL cannot hold a rule from {rule.iif} to {rule.oif}: one of them must "
            "be an SVI (Vlan<N>) whose subnet stands for it",
            hint="route the zones through SVIs of this switch, or use a firewall for this rule",
        )
    if rule.iif:
        return Placed(rule, rule.iif, "in")
    if rule.oif:
        return Placed(rule, rule.oif, "out")
    raise PlanError("an IOS-XE ACL rule needs an in- or out-interface to be bound to")


def acl_name(interface: str, direction: str, entries: list[str]) -> str:
    """`CORDON-I-Vlan110-<hash of its entries>`: a new content is a new ACL, so the driver swaps
    an interface's binding to it in one command (no moment without filtering)."""
    digest = hashlib.sha256("\n".join(entries).encode()).hexdigest()[:8]
    return f"{PREFIX}-{'I' if direction == 'in' else 'O'}-{acl_token(interface)}-{digest}"


def _may_overlap(a: NftRule, b: NftRule) -> bool:
    """Can one packet match both rules (each field unset, or equal)?"""
    return all(x is None or y is None or x == y for x, y in zip(_f(a), _f(b), strict=True))


def _f(r: NftRule) -> tuple[str | int | None, ...]:
    return (r.iif, r.oif, r.saddr, r.daddr, r.sport, r.dport)


def _covers(a: NftRule, c: NftRule) -> bool:
    """Does every packet matching `c` match `a`?"""
    return all(x is None or x == y for x, y in zip(_f(a), _f(c), strict=True))


def layout(state: DeviceState) -> dict[tuple[str, str], list[Placed]]:
    """(interface, direction) -> its rules in first-match order; PlanError when the split into
    interface-bound ACLs would not give the state's verdicts."""
    acls: dict[tuple[str, str], list[Placed]] = defaultdict(list)
    for rule in state.ordered_rules():
        p = place(rule)
        acls[(p.interface, p.direction)].append(p)
    for (iface, direction), placed in acls.items():
        for i, p in enumerate(placed):
            if p.rule.verdict == "accept":
                _check_other_side(acls, p, iface, direction)
            if p.rule.verdict == "count":
                _check_count(placed[i + 1 :], p)
    return dict(acls)


def _check_other_side(
    acls: dict[tuple[str, str], list[Placed]], p: Placed, iface: str, direction: str
) -> None:
    rule = p.rule
    other = [("in", rule.iif)] if direction == "out" else [("out", rule.oif)]
    for other_dir, other_if in other:
        for (o_if, o_dir), placed in acls.items():
            if o_dir != other_dir or (other_if is not None and o_if != other_if):
                continue
            for q in placed:
                if q.rule.verdict == "drop" and _may_overlap(q.rule, rule):
                    raise PlanError(
                        f"IOS-XE ACLs cannot give this state's verdicts: the accept "
                        f"{remark(rule)!r} ({direction} on {iface}) would be undone by the "
                        f"drop {remark(q.rule)!r} ({o_dir} on {o_if})",
                        hint="an IOS-XE switch cannot keep a zone reconnected while it is "
                        "quarantined; use a firewall for such a state",
                    )


def _check_count(after: list[Placed], c: Placed) -> None:
    for q in after:
        if q.rule.verdict == "accept" and _covers(q.rule, c.rule):
            return
        if q.rule.verdict == "drop" and _may_overlap(q.rule, c.rule):
            raise PlanError(
                f"IOS-XE ACLs count by permitting: the counter {remark(c.rule)!r} would let "
                f"through packets the drop {remark(q.rule)!r} must stop"
            )


def _address(host: str | None, group: str | None) -> str:
    if host is not None:
        return f"host {host}"
    if group is not None:
        return f"object-group {group}"
    return "any"


def entry(p: Placed) -> str:
    """The ACL entry of a placed rule (without its remark)."""
    r = p.rule
    src = _address(r.saddr, p.src_group)
    dst = _address(r.daddr, p.dst_group)
    tcp = r.sport is not None or r.dport is not None or r.verdict == "count"
    proto = "tcp" if tcp else "ip"
    line = f"{'deny' if r.verdict == 'drop' else 'permit'} {proto} {src}"
    if r.sport is not None:
        line += f" eq {r.sport}"
    line += f" {dst}"
    if r.dport is not None:
        line += f" eq {r.dport}"
    if r.reply:
        line += " established"
    if r.verdict == "count":
        line += " match-all +syn -ack"
    return line


def acls(state: DeviceState) -> list[tuple[str, str, str, list[tuple[str, str]]]]:
    """(interface, direction, ACL name, [(remark, entry)]) of every Cordon ACL of `state`."""
    out = []
    for (iface, direction), placed in sorted(layout(state).items()):
        pairs = [(remark(p.rule), entry(p)) for p in placed]
        name = acl_name(iface, direction, [f"{a}\n{b}" for a, b in pairs])
        out.append((iface, direction, name, pairs))
    return out


def acl_script(state: DeviceState) -> str:
    """The whole desired text of Cordon's ACLs for `state`: each ACL (ending with `permit ip any
    any`: what no rule names passes, as in the state) and its binding. The driver converges the
    device to it: it fills the `CORDON-NET-*` object-groups named here, defines the ACLs that
    are new, swaps the bindings, then removes every other Cordon ACL and binding. An empty state
    is only the head line: no Cordon ACL, no binding."""
    lines = [SCRIPT_HEAD]
    bindings: list[str] = []
    for iface, direction, name, pairs in acls(state):
        lines.append(f"ip access-list extended {name}")
        for rem, ent in pairs:
            lines += [f" remark {rem}", f" {ent}"]
        lines.append(" permit ip any any")
        bindings += [f"interface {iface}", f" ip access-group {name} {direction}"]
    return "\n".join(lines + bindings) + "\n"


def acl_comments(state: DeviceState) -> frozenset[str]:
    """The exact set of remarks Cordon's ACLs hold in `state` (for read-back)."""
    return frozenset(remark(p.rule) for placed in layout(state).values() for p in placed)


def net_groups(script_lines: list[str]) -> list[str]:
    """The interfaces whose `CORDON-NET-*` object-groups a script refers to, in order."""
    seen: dict[str, None] = {}
    for line in script_lines:
        for m in re.finditer(rf"object-group {re.escape(NET_PREFIX)}(\S+)", line):
            seen.setdefault(m.group(1), None)
    return list(seen)
