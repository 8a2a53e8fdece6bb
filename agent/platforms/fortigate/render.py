"""Owns the fortigate renderer: an isolation state as the whole set of FortiOS objects Cordon owns
on a FortiGate (firewall addresses, custom TCP services and policies, every name starting with
`cordon-`), one object a line, the policies in the order they must hold before the site's own;
and the exact set of object lines the read-back expects. Pure: imports the plan's state types.

Script lines (the plan shows them; the driver converges the device to exactly them):

    address cordon-h-198.18.1.10 subnet=198.18.1.10/32
    service cordon-tcp-443 tcp=443
    policy 1 cordon-1a2b3c4d action=deny srcintf=wan1 dstintf=any srcaddr=all dstaddr=all \
service=ALL comments='isolate: cut internet #1a2b3c4d'
    local-in 1 cordon-1a2b3c4d action=deny intf=wan1 srcaddr=all dstaddr=all service=ALL \
comments='isolate: cut internet #1a2b3c4d'

Same packet effects as `linux_nftables`: FortiOS policies are stateful and first-match; a
session a policy accepted carries its replies through the session table without a policy lookup.
So a reply accept (`NftRule.reply`) becomes nothing: the request policy of its flow, placed
before the drops, lets the session open, and its replies follow; the server side still cannot
open a connection back (its SYN is a new session that meets the drops). The nft renderer needs
reply rules because its drops are stateless and catch replies too; the planner always cuts both
ways (iif and oif drops, a->b and b->a blocks, quarantine both ways), so every reply a drop would
catch belongs to a session whose opening a drop catches first. A `count` rule has no verdict in
nftables; a FortiOS policy always has one. It becomes, in its place, one policy per later rule
its match overlaps (the overlap, with that rule's action) and a last accept of its own match
(the site's default): the verdict of every packet is the one nft gives it, and the policies'
hit counts (new sessions) summed under the count rule's name are its counter (`counted_as`).

Fewer policies, fewer REST writes (each a round trip and a policy-table commit on the unit):
FortiOS policy fields srcintf, dstintf, srcaddr, dstaddr and service are lists, and a packet
matches a policy when it matches one name of each list (CLI reference, `config firewall
policy`). Two neighbouring denies that differ in one field only are exactly one policy with that
field's lists joined, so `merge` folds them (a zone segmentation's pair-by-pair denies become one
policy per run of source zones with the same destinations: La Sagesse's 80 policies, 8). Only
neighbours merge, so every packet meets the same first verdict; accepts and a count rule's
policies stay one per rule (their counters are read per rule). The script writes a list as
names joined by ',' in sorted order (`srcintf=lan0.110,lan0.115`).

The firewall's own traffic on a cut interface. The nft renderer also drops, in its input chain,
what a cut interface brings to the firewall itself (every drop naming an incoming interface and
no outgoing one). FortiOS filters traffic to the unit with `config firewall local-in-policy`
(intf, srcaddr, dstaddr, service, schedule, action; CLI reference 7.0/7.2; no policy means
allowed, as far as each interface's `allowaccess` lets it): each such drop becomes a Cordon-owned
local-in policy (`local-in <seq> cordon-<id> action=deny intf=...`) in its place in the order.
A local-in policy has no `name`: the device holds Cordon's name as the first word of its
`comments`, which the read-back splits off, so the read-back still compares the exact set.
Like a firewall policy, a local-in policy acts on new sessions; replies to connections the
FortiGate opened itself pass by the session table. FortiOS has NO counterpart for the nft
output chain: there is no local-out policy table (`local-out` exists only as a traffic shaping
`traffic-type`, Administration Guide 7.4 "Local-in and local-out traffic matching"), so what the
FortiGate itself sends out of a cut interface (its DNS, NTP, FortiGuard, log uploads) is not
blocked by Cordon; its replies still come back. The WAN or internet cut takes the peer's side too.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shlex
from dataclasses import dataclass

from agent.network.state import DeviceState, NftRule

PREFIX = "cordon-"
HEADER = (
    "# FortiOS objects Cordon owns (firewall/address, firewall.service/custom, firewall/policy, "
    "firewall/local-in-policy); its policies first, in this order, before the site's own"
)
# FortiOS interface names: at most 15 characters (the CLI's limit); letters, digits, . _ -
_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9 .,:;_#/()+=@-]")
COMMENT_MAX = 1023  # firewall policy `comments`


def rule_id(rule: NftRule) -> str:
    """The 8-hex id of a rule's match and verdict (the linux_nftables renderer's, so the same rule
    has the same id on both platforms)."""
    return hashlib.sha256(repr(rule.id_key()).encode()).hexdigest()[:8]


def check_ifname(name: str) -> str:
    """`name` if it is a FortiOS interface name that cannot break out of a CLI or URL; else
    ValueError naming it."""
    if not _IFNAME.match(name) or name == "any":
        raise ValueError(
            f"interface name {name!r} is not a FortiOS interface name "
            "(1-15 letters, digits, '.', '_', '-'; not 'any')"
        )
    return name


def safe_comment(text: str) -> str:
    """A comment FortiOS stores as it is: characters that could end a quoted CLI value or a line
    (quotes, backslash, control characters) replaced by '_', cut to 1023 characters."""
    return _UNSAFE.sub("_", text)[:COMMENT_MAX]


def address_name(addr: str) -> str:
    net = ipaddress.ip_network(addr, strict=False)
    if net.version != 4:
        raise ValueError(f"address {addr!r}: FortiOS firewall/address here is IPv4 only")
    if net.prefixlen == 32:
        return f"{PREFIX}h-{net.network_address}"
    return f"{PREFIX}n-{net.network_address}-{net.prefixlen}"


def service_name(port: int) -> str:
    return f"{PREFIX}tcp-{port}"


@dataclass(frozen=True)
class Policy:
    """One FortiOS firewall policy Cordon owns, as the script and the read-back show it."""

    name: str
    action: str  # accept | deny
    srcintf: str  # interface names joined by ',' (sorted), or "any"
    dstintf: str
    srcaddr: str  # address names joined by ',' (sorted), or "all"
    dstaddr: str
    service: str  # service names joined by ',' (sorted), or "ALL"
    comments: str

    def line(self, seq: int, flag: str = "") -> str:
        words = [
            "policy",
            str(seq),
            self.name,
            f"action={self.action}",
            f"srcintf={self.srcintf}",
            f"dstintf={self.dstintf}",
            f"srcaddr={self.srcaddr}",
            f"dstaddr={self.dstaddr}",
            f"service={self.service}",
            f"comments={shlex.quote(self.comments)}",
        ]
        if flag:
            words.append(f"placement={flag}")
        return " ".join(words)


@dataclass(frozen=True)
class LocalIn:
    """One FortiOS local-in policy Cordon owns (traffic to the FortiGate itself). FortiOS gives
    it no name: the device's `comments` are `<name> <comments>` (`device_comments`)."""

    name: str
    action: str  # deny (Cordon only drops the unit's own traffic)
    intf: str  # an interface name (FortiOS 7.0/7.2: one incoming interface)
    srcaddr: str
    dstaddr: str
    service: str
    comments: str

    def line(self, seq: int, flag: str = "") -> str:
        words = [
            "local-in",
            str(seq),
            self.name,
            f"action={self.action}",
            f"intf={self.intf}",
            f"srcaddr={self.srcaddr}",
            f"dstaddr={self.dstaddr}",
            f"service={self.service}",
            f"comments={shlex.quote(self.comments)}",
        ]
        if flag:
            words.append(f"placement={flag}")
        return " ".join(words)

    @property
    def device_comments(self) -> str:
        return f"{self.name} {self.comments}"


def _field(a: str | int | None, b: str | int | None) -> tuple[bool, str | int | None]:
    """The intersection of two equality matches (None: any): (empty?, value)."""
    if a is None:
        return False, b
    if b is None or a == b:
        return False, a
    return True, None


def _addr_meet(a: str | None, b: str | None) -> tuple[bool, str | None]:
    if a is None or b is None:
        return False, a if b is None else b
    na, nb = ipaddress.ip_network(a, strict=False), ipaddress.ip_network(b, strict=False)
    if na.subnet_of(nb):  # type: ignore[arg-type]
        return False, a
    if nb.subnet_of(na):  # type: ignore[arg-type]
        return False, b
    return True, None


def overlap(a: NftRule, b: NftRule) -> NftRule | None:
    """The rule matching what both `a` and `b` match, with `b`'s verdict; None if nothing does."""
    out: dict[str, str | int | None] = {}
    for f in ("iif", "oif", "sport", "dport"):
        empty, value = _field(getattr(a, f), getattr(b, f))
        if empty:
            return None
        out[f] = value
    for f in ("saddr", "daddr"):
        empty, value = _addr_meet(getattr(a, f), getattr(b, f))
        if empty:
            return None
        out[f] = value
    return NftRule(b.verdict, tag=b.tag, **out)  # type: ignore[arg-type]


def _policy(rule: NftRule, name: str, action: str, comment: str) -> Policy:
    return Policy(
        name=name,
        action=action,
        srcintf=check_ifname(rule.iif) if rule.iif else "any",
        dstintf=check_ifname(rule.oif) if rule.oif else "any",
        srcaddr=address_name(rule.saddr) if rule.saddr else "all",
        dstaddr=address_name(rule.daddr) if rule.daddr else "all",
        service=service_name(rule.dport) if rule.dport is not None else "ALL",
        comments=safe_comment(comment),
    )


ANY = frozenset({"any", "all", "ALL"})  # the built-in "everything" of a policy field
_LISTS = ("srcintf", "dstintf", "srcaddr", "dstaddr", "service")


def members(value: str) -> list[str]:
    """The names of one policy field as the script writes it (a comma-joined list: FortiOS
    policies take lists for srcintf, dstintf, srcaddr, dstaddr and service)."""
    return value.split(",")


def _joined(names: set[str] | list[str]) -> str:
    return ",".join(sorted(set(names)))


def _mergeable(a: Policy, b: Policy) -> str | None:
    """The one list field whose union turns `a` and `b` into one policy matching exactly what
    either matches (FortiOS: a packet matches a policy when it matches ANY name of EACH field,
    so two policies equal in every field but one are their union with that field's lists
    joined); None if they differ in more than one field or in action, or the field differing
    names a built-in 'everything' (any/all/ALL: it stands alone)."""
    if a.action != b.action:
        return None
    differ = [f for f in _LISTS if set(members(getattr(a, f))) != set(members(getattr(b, f)))]
    if len(differ) != 1:
        return None
    f = differ[0]
    if ANY & {*members(getattr(a, f)), *members(getattr(b, f))}:
        return None
    return f


_SINGLE = re.compile(rf"^{re.escape(PREFIX)}[0-9a-f]{{8}}$")


def _group(head: Policy, parts: list[tuple[str, str]], fields: dict[str, str]) -> Policy:
    """The policy of several rules' denies: `parts` their (tag, id), `fields` its lists."""
    ids = [rid for _, rid in parts]
    gid = hashlib.sha256(" ".join(ids).encode()).hexdigest()[:8]
    tags = list(dict.fromkeys(tag for tag, _ in parts))
    return Policy(
        name=f"{PREFIX}g{gid}",
        action=head.action,
        comments=safe_comment(f"{', '.join(tags)} #{' #'.join(ids)}"),
        **fields,
    )


def merge(pols: list[Policy]) -> list[Policy]:
    """Fewer policies, same verdicts: each deny merged into the deny just before it when the two
    differ in one list field only (repeated until nothing merges). Only neighbours merge, so no
    policy between them can take a packet first: every packet meets the same first verdict.
    Accepts (their traffic is read back per rule) and the policies of a count rule (their hit
    counts are its counter) stay one per rule. A merged policy is `cordon-g<8 hex>` (no counter
    key, see `count_key`) and its comments list the tags and rule ids it holds."""
    # (policy as it stands, its rules' (tag, id) when it may merge, else None)
    runs: list[tuple[Policy, list[tuple[str, str]] | None]] = []
    for p in pols:
        single = p.action == "deny" and bool(_SINGLE.match(p.name))
        tag = p.comments.rsplit(" #", 1)[0]
        runs.append((p, [(tag, p.name.removeprefix(PREFIX))] if single else None))
    changed = True
    while changed:
        changed = False
        out: list[tuple[Policy, list[tuple[str, str]] | None]] = []
        for p, parts in runs:
            if out and parts is not None and out[-1][1] is not None:
                last, last_parts = out[-1]
                field = _mergeable(last, p)
                if field is not None and last_parts is not None:
                    fields = {f: getattr(last, f) for f in _LISTS}
                    fields[field] = _joined([*members(fields[field]), *members(getattr(p, field))])
                    both = [*last_parts, *parts]
                    out[-1] = (_group(last, both, fields), both)
                    changed = True
                    continue
            out.append((p, parts))
        runs = out
    return [p for p, _ in runs]


def policies(state: DeviceState) -> list[Policy]:
    """Cordon's policies for `state`, in the order they must hold (see the module docstring),
    neighbouring denies merged (`merge`)."""
    return merge(_policies(state))


def _policies(state: DeviceState) -> list[Policy]:
    """One policy per rule (a count rule: one per later rule it overlaps, and its own)."""
    rules = [r for r in state.ordered_rules() if not r.reply]
    out: list[Policy] = []
    for i, rule in enumerate(rules):
        rid = rule_id(rule)
        if rule.verdict != "count":
            action = "accept" if rule.verdict == "accept" else "deny"
            out.append(_policy(rule, PREFIX + rid, action, f"{rule.tag} #{rid}"))
            continue
        for later in rules[i + 1 :]:
            if later.verdict == "count":
                continue
            part = overlap(rule, later)
            if part is not None:
                action = "accept" if later.verdict == "accept" else "deny"
                name = f"{PREFIX}{rid}-{rule_id(later)}"
                out.append(_policy(part, name, action, f"{rule.tag} #{rid} counted"))
                if part.fields() == rule.fields():
                    break  # it takes every packet the count rule matches: nothing reaches later
        else:
            out.append(_policy(rule, PREFIX + rid, "accept", f"{rule.tag} #{rid} counted"))
    return out


def local_in(state: DeviceState) -> list[LocalIn]:
    """Cordon's local-in policies for `state`: each drop that names an incoming interface and no
    outgoing one also drops what that interface brings to the FortiGate itself (the nft
    renderer's input chain), in the rules' order."""
    out = []
    for rule in state.ordered_rules():
        if rule.verdict != "drop" or not rule.iif or rule.oif:
            continue
        rid = rule_id(rule)
        name = PREFIX + rid
        p = _policy(rule, name, "deny", f"{rule.tag} #{rid} local-in")
        out.append(
            LocalIn(
                name=name,
                action="deny",
                intf=p.srcintf,
                srcaddr=p.srcaddr,
                dstaddr=p.dstaddr,
                service=p.service,
                comments=p.comments[: COMMENT_MAX - len(name) - 1],
            )
        )
    return out


def objects(state: DeviceState) -> list[str]:
    """The object lines of `state`: addresses, services (sorted), then policies in order, then
    local-in policies in order."""
    pols = policies(state)
    local = local_in(state)
    refs: list[Policy | LocalIn] = [*pols, *local]
    addrs = {a for p in refs for a in [*members(p.srcaddr), *members(p.dstaddr)]}
    lines = []
    for rule in state.rules:
        for a in (rule.saddr, rule.daddr):
            if a and address_name(a) in addrs:
                net = ipaddress.ip_network(a, strict=False)
                lines.append(f"address {address_name(a)} subnet={net}")
    ports = {r.dport for r in state.rules if r.dport is not None and not r.reply}
    services = [f"service {service_name(p)} tcp={p}" for p in ports]
    return [
        *sorted(set(lines)),
        *sorted(services),
        *(p.line(i + 1) for i, p in enumerate(pols)),
        *(p.line(i + 1) for i, p in enumerate(local)),
    ]


def script(state: DeviceState) -> str:
    """The whole desired set of Cordon's objects for `state` (none: every `cordon-` object is
    removed). Raises ValueError on an interface name or address FortiOS would not take."""
    return "\n".join([HEADER, *objects(state)]) + "\n"


def comments(state: DeviceState) -> frozenset[str]:
    """The exact object lines the device shows once it holds `state` (the read-back compares the
    whole set: names, matches, actions, order)."""
    return frozenset(objects(state))


def comments_in(ours: str) -> frozenset[str]:
    """The object lines in a read-back text (`Facts.ours`, rendered like `script`)."""
    return frozenset(ln for ln in ours.splitlines() if ln.strip() and not ln.startswith("#"))


def counted_as(rule: NftRule) -> str:
    """The key a count rule's hit counts are summed under: its policies' common name."""
    return PREFIX + rule_id(rule)


def count_key(policy_name: str) -> str | None:
    """The counter key of one of Cordon's policies (`cordon-<id>` of `cordon-<id>[-<id>]`)."""
    m = re.match(rf"^({re.escape(PREFIX)}[0-9a-f]{{8}})(?:-[0-9a-f]{{8}})?$", policy_name)
    return m.group(1) if m else None


def shut_lines(interfaces: list[str], *, down: bool) -> list[str]:
    """`interface <name> down|up` lines (the driver sets `status` on cmdb system/interface)."""
    return [f"interface {check_ifname(i)} {'down' if down else 'up'}" for i in sorted(interfaces)]
