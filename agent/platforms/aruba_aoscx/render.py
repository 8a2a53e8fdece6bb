"""Owns the aruba_aoscx renderer: interface shutdown lines, and an isolation state's packet rules
as AOS-CX IPv4 ACLs in CLI configuration syntax (`access-list ip CORDON-...`, applied `routed-in`
on the ingress VLAN interface and `routed-out` on the egress one), with a comment on every entry
that carries the rule's id, so the read-back compares the exact set. Pure: imports the plan's
state types and the error tree only.

Semantics, kept equal to `agent.network.state` (first match; anything no rule names passes):
- An AOS-CX ACL ends with an implicit deny; every Cordon ACL ends with `permit any any any`, so a
  packet no rule names passes, as in the reference.
- A rule naming only an ingress interface lives in that interface's routed-in ACL; only an
  egress interface, in its routed-out ACL. A rule naming both (a declared flow's accept) needs
  its addresses: an ingress ACL cannot see the egress interface, the route of the destination
  decides it; such a rule is written in both ACLs, so a packet passes when both ACLs let it
  (the routed-in one first, then the routed-out one), which is the reference's first match for
  the rule shapes Cordon plans (declared-flow accepts before single-interface drops).
- AOS-CX ACLs are stateless. A reply accept (`NftRule.reply`) becomes `established`: TCP
  segments with ACK or RST set, from the service's port to the client. It lets every reply of a
  connection the client opened through, even one opened before the ACL (no session table to miss
  it); it does NOT let the server side open a connection (a SYN without ACK matches no entry),
  but it does let that host send ACK or RST segments from the service's port to the client (an
  ACK scan): weaker than the connection tracking of `linux_nftables`.
- Refused (PlanError, nothing sent): a rule naming two interfaces without addresses (a zone to
  zone block, a whole-zone accept): the ingress ACL cannot express the egress interface without
  the subnets routed through it, which the state does not carry; a counting rule (`count`):
  an ACL entry always has a verdict, and counting without one would change what passes."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from agent.errors import PlanError
from agent.network.state import DeviceState, NftRule

PREFIX = "CORDON-"
HEADER = "! Cordon ACLs: the whole set (none below: Cordon holds none)"
_UNSAFE = re.compile(r"[^A-Za-z0-9 _.:=-]")


def shut_lines(interfaces: list[str], *, down: bool) -> list[str]:
    out: list[str] = []
    for name in sorted(interfaces):
        out += [f"interface {name}", "shutdown" if down else "no shutdown"]
    return out


def acl_name(interface: str, direction: str) -> str:
    """`CORDON-IN-vlan110`, `CORDON-OUT-1_1_49`: '/' and ':' of AOS-CX port names become '_'
    (no valid interface name contains '_', so two interfaces never share an ACL name)."""
    word = "IN" if direction == "in" else "OUT"
    return f"{PREFIX}{word}-{interface.replace('/', '_').replace(':', '_')}"


def rule_id(rule: NftRule) -> str:
    """A short stable id of a rule's match and verdict (as the reference renderer's)."""
    return hashlib.sha256(repr(rule.id_key()).encode()).hexdigest()[:8]


def clean(text: str) -> str:
    """A tag as it may stand in an ACE comment: no quote, no control character, 40 at most."""
    return _UNSAFE.sub("_", text)[:40].strip() or "cordon"


def comment(rule: NftRule, direction: str) -> str:
    return f"{clean(rule.tag)} #{rule_id(rule)} {direction}"


def default_comment(acl: str) -> str:
    return f"cordon default permit {acl}"


@dataclass(frozen=True)
class Ace:
    """One entry of a Cordon ACL: its verdict and match as CLI words, and its comment."""

    text: str
    comment: str


def _addr(ip: str | None) -> str:
    return ip if ip else "any"


def ace_text(rule: NftRule) -> str:
    if rule.verdict == "count":
        raise PlanError(
            f"rule {rule.tag!r}: AOS-CX ACL entries cannot count without a verdict",
            hint="AOS-CX holds no counting rules: watch this zone from a platform that does "
            "(linux_nftables), or soak without the new-connection counter",
        )
    tcp = rule.sport is not None or rule.dport is not None or rule.reply
    words = ["permit" if rule.verdict == "accept" else "deny", "tcp" if tcp else "any"]
    words.append(_addr(rule.saddr))
    if rule.sport is not None:
        words += ["eq", str(rule.sport)]
    words.append(_addr(rule.daddr))
    if rule.dport is not None:
        words += ["eq", str(rule.dport)]
    if rule.reply:
        words.append("established")
    words.append("count")
    return " ".join(words)


def acls(state: DeviceState) -> dict[tuple[str, str], list[Ace]]:
    """(interface, 'in'|'out') -> its ACL's entries, in evaluation order, the final permit
    included; PlanError for a rule AOS-CX cannot hold (see the module's docstring)."""
    out: dict[tuple[str, str], list[Ace]] = {}
    for rule in state.ordered_rules():
        places: list[tuple[str, str]] = []
        if rule.iif and rule.oif and not (rule.saddr or rule.daddr):
            raise PlanError(
                f"rule {rule.tag!r} ({rule.verdict} from {rule.iif} to {rule.oif}): an AOS-CX "
                "ingress ACL cannot match the egress interface without addresses",
                hint="on AOS-CX, cut a zone whole (quarantine, cut_link) or allow declared "
                "flows; zone-to-zone blocks need a firewall platform",
            )
        if not rule.iif and not rule.oif:
            raise PlanError(f"rule {rule.tag!r} names no interface: AOS-CX applies ACLs per VLAN")
        if rule.iif:
            places.append((rule.iif, "in"))
        if rule.oif:
            places.append((rule.oif, "out"))
        text = ace_text(rule)
        for place in places:
            out.setdefault(place, []).append(Ace(text, comment(rule, place[1])))
    for (iface, direction), entries in out.items():
        name = acl_name(iface, direction)
        entries.append(Ace("permit any any any count", default_comment(name)))
    return out


def script(state: DeviceState) -> str:
    """The whole text of Cordon's objects on the switch for `state` (empty: none): each ACL
    then its application. The driver converges the switch to exactly this (`apply`)."""
    lines: list[str] = [HEADER]
    table = acls(state)
    for (iface, direction), entries in sorted(
        table.items(), key=lambda kv: acl_name(kv[0][0], kv[0][1])
    ):
        lines.append(f"access-list ip {acl_name(iface, direction)}")
        for n, ace in enumerate(entries, start=1):
            lines += [f"    {n * 10} comment {ace.comment}", f"    {n * 10} {ace.text}"]
    for iface in sorted({i for i, _ in table}):
        lines.append(f"interface {iface}")
        for direction in ("in", "out"):
            if (iface, direction) in table:
                routed = "routed-in" if direction == "in" else "routed-out"
                lines.append(f"    apply access-list ip {acl_name(iface, direction)} {routed}")
    return "\n".join(lines) + "\n"


def comments(state: DeviceState) -> frozenset[str]:
    """The exact comments the switch's Cordon ACLs hold in `state` (for the read-back)."""
    return frozenset(ace.comment for entries in acls(state).values() for ace in entries)


def counted_as(rule: NftRule) -> str:
    """The comment an entry's hit count is keyed by (its routed-in copy, else routed-out)."""
    return comment(rule, "in" if rule.iif else "out")


def interfaces_of(lines: Iterable[str]) -> list[str]:
    """The interfaces a shutdown change set names (`interface X` lines)."""
    return [ln.split(None, 1)[1].strip() for ln in lines if ln.startswith("interface ")]
