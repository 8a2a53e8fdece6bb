"""Owns the juniper_junos twin device's SRX security subset: its own reading of `security zones`,
the global address book, `applications` and `security policies` (zone-pair policies and the
default policy) as `set` statements; `insert ... before|after policy`; what `commit check`
refuses there; and their real effect in the namespace, as a STATEFUL nftables chain (a policy is
looked up for a session's first packet only, in configuration order within its zone pair, first
match wins; packets of an open session pass by the connection table; traffic entering or leaving
by an interface in no zone is dropped; what no policy matches meets the default policy,
`deny-all` unless configured). Hit counts are the sessions each policy matched (its nft counter,
counting first packets only). It never uses Cordon's renderer. Standard library only: the twin
daemon (`twin_device`) imports it.

Junos's documented behaviour it follows: Juniper, "Security Policies Overview" / "Understanding
Security Policy Rules" (from-zone/to-zone context, first match, default deny), "Reordering
Security Policies" (new policies go last, `insert ... before`), the SRX factory default (the
same policy name, `default-permit`, in several zone pairs); sessions opened before a commit go on
(no `policy-rematch`). The error texts are the twin's own, in Junos's shape (`fixtures/`)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

_IFL = r"[a-z]{2,5}(?:-\d{1,2}/\d{1,2}/\d{1,3}(?::\d{1,2})?|\d{0,4})(?:\.\d{1,5})?"
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"
_PREFIX = r"\d{1,3}(?:\.\d{1,3}){3}/\d{1,2}"
_POL = rf"security policies from-zone {_NAME} to-zone {_NAME} policy {_NAME}"

STATEMENTS = [
    re.compile(p)
    for p in (
        rf"^security zones security-zone {_NAME}$",
        rf"^security zones security-zone {_NAME} interfaces {_IFL}$",
        rf"^security zones security-zone {_NAME} interfaces {_IFL} host-inbound-traffic "
        r"system-services (?:all|ping|ssh|netconf)$",
        rf"^security address-book global address {_NAME} {_PREFIX}$",
        rf"^applications application {_NAME} protocol (?:tcp|udp)$",
        rf"^applications application {_NAME} destination-port \d{{1,5}}$",
        rf"^{_POL} match (?:source-address|destination-address|application) {_NAME}$",
        rf"^{_POL} then (?:permit|deny|reject)$",
        r"^security policies default-policy (?:permit-all|deny-all)$",
        r"^security policies policy-rematch$",
    )
]
# statements whose last word is a value that a new `set` replaces
SINGLE = [
    re.compile(r"^(security address-book global address \S+) \S+$"),
    re.compile(r"^(applications application \S+ (?:protocol|destination-port)) \S+$"),
    re.compile(rf"^({_POL} then) (?:permit|deny|reject)$"),
    re.compile(r"^(security policies default-policy) \S+$"),
]
_INSERT = re.compile(
    rf"^(?P<pair>security policies from-zone {_NAME} to-zone {_NAME}) policy (?P<p>{_NAME}) "
    rf"(?P<where>before|after) policy (?P<q>{_NAME})$"
)
_PREDEFINED = {"any", "any-ipv4"}
_PREDEFINED_APPS = {"any"}


def single_key(stmt: str) -> str | None:
    for rx in SINGLE:
        m = rx.match(stmt)
        if m:
            return m.group(1)
    return None


def insert(config: list[str], stmt: str) -> tuple[list[str], str | None]:
    """`config` with `insert <stmt>` applied (the policy's statements moved before or after the
    other's), or an error message (config unchanged)."""
    m = _INSERT.match(stmt)
    if m is None:
        return config, "syntax error"
    pair = m.group("pair")

    def of(name: str) -> list[int]:
        head = f"{pair} policy {name} "
        return [i for i, s in enumerate(config) if s.startswith(head)]

    moving, anchor = of(m.group("p")), of(m.group("q"))
    if not moving or not anchor:
        return config, "statement not found"
    if m.group("p") == m.group("q"):
        return config, "cannot insert a policy relative to itself"
    moved = [config[i] for i in moving]
    rest = [s for i, s in enumerate(config) if i not in set(moving)]
    head = f"{pair} policy {m.group('q')} "
    at = [i for i, s in enumerate(rest) if s.startswith(head)]
    pos = at[0] if m.group("where") == "before" else at[-1] + 1
    return rest[:pos] + moved + rest[pos:], None


@dataclass
class Policy:
    frm: str
    to: str
    name: str
    match: dict[str, list[str]] = field(default_factory=dict)
    then: str | None = None


@dataclass
class Security:
    """The security part of a configuration, as the device reads it."""

    zones: dict[str, list[str]]  # zone -> its logical interfaces
    addresses: dict[str, str]
    applications: dict[str, dict[str, str]]
    policies: list[Policy]  # in configuration order
    default: str  # permit-all | deny-all

    @property
    def present(self) -> bool:
        return bool(self.zones)


def read(config: list[str]) -> Security:
    zones: dict[str, list[str]] = {}
    addresses: dict[str, str] = {}
    apps: dict[str, dict[str, str]] = {}
    pols: dict[tuple[str, str, str], Policy] = {}
    default = "deny-all"
    for s in config:
        w = s.split()
        if w[:3] == ["security", "zones", "security-zone"]:
            members = zones.setdefault(w[3], [])
            if len(w) >= 6 and w[4] == "interfaces":
                ifl = w[5] if "." in w[5] else f"{w[5]}.0"
                if ifl not in members:
                    members.append(ifl)
        elif w[:4] == ["security", "address-book", "global", "address"]:
            addresses[w[4]] = w[5]
        elif w[:2] == ["applications", "application"]:
            apps.setdefault(w[2], {})[w[3]] = w[4]
        elif w[:3] == ["security", "policies", "default-policy"]:
            default = w[3]
        elif w[:3] == ["security", "policies", "from-zone"] and len(w) >= 9:
            key = (w[3], w[5], w[7])
            pol = pols.setdefault(key, Policy(w[3], w[5], w[7]))
            if w[8] == "match":
                pol.match.setdefault(w[9], []).append(w[10])
            elif w[8] == "then":
                pol.then = w[9]
    return Security(zones, addresses, apps, list(pols.values()), default)


def check(config: list[str]) -> list[tuple[str, str, str]]:  # noqa: PLR0912 - one per refusal
    """What `commit check` refuses in the security subset: (path, message, bad element)."""
    sec = read(config)
    out: list[tuple[str, str, str]] = []
    seen: dict[str, str] = {}
    for zone, members in sec.zones.items():
        for ifl in members:
            if ifl in seen:
                out.append(
                    (
                        f"[edit security zones security-zone {zone} interfaces]",
                        f"Interface {ifl} must be in only one security zone (also in {seen[ifl]})",
                        ifl,
                    )
                )
            seen[ifl] = zone
    for p in sec.policies:
        path = f"[edit security policies from-zone {p.frm} to-zone {p.to} policy {p.name}]"
        for zone in (p.frm, p.to):
            if zone not in sec.zones:
                out.append((path, f"Security zone {zone} is not defined", zone))
        for need in ("source-address", "destination-address", "application"):
            if need not in p.match:
                out.append((path, f"missing mandatory statement: '{need}'", need))
        if p.then is None:
            out.append((path, "missing mandatory statement: 'then'", "then"))
        for ref in p.match.get("source-address", []) + p.match.get("destination-address", []):
            if ref not in _PREDEFINED and ref not in sec.addresses:
                out.append((path, f"Address {ref} is not defined in the global address book", ref))
        for ref in p.match.get("application", []):
            if ref not in _PREDEFINED_APPS and ref not in sec.applications:
                out.append((path, f"Application {ref} is not defined", ref))
    for name, app in sec.applications.items():
        if "protocol" not in app:
            out.append(
                (f"[edit applications application {name}]", "protocol must be specified", name)
            )
    return out


def comment(p: Policy) -> str:
    return f"pol:{p.frm}>{p.to}>{p.name}"


def nft_chains(sec: Security, kname: Callable[[str], str | None]) -> tuple[list[str], list[str]]:
    """(rules for the forward chain, extra chains) of the security flow; nothing for a device
    without security zones (an EX)."""
    if not sec.present:
        return [], []
    kernel: dict[str, list[str]] = {}
    for zone, members in sec.zones.items():
        kernel[zone] = [k for k in (kname(i) for i in members) if k]
    fwd = ["ct state established,related accept", "ct state invalid drop"]
    chains: list[str] = []
    pairs: dict[tuple[str, str], list[Policy]] = {}
    for p in sec.policies:
        pairs.setdefault((p.frm, p.to), []).append(p)
    final = "accept" if sec.default == "permit-all" else "drop"
    for i, a in enumerate(sorted(kernel)):
        for j, b in enumerate(sorted(kernel)):
            if not kernel[a] or not kernel[b]:
                continue
            chain = f"z{i}_{j}"
            ins = "{ " + ", ".join(json.dumps(k) for k in kernel[a]) + " }"
            outs = "{ " + ", ".join(json.dumps(k) for k in kernel[b]) + " }"
            fwd.append(f"iifname {ins} oifname {outs} jump {chain}")
            body = [_nft_policy(sec, p) for p in pairs.get((a, b), [])]
            chains += [
                f"  chain {chain} {{",
                *(f"    {r}" for r in body if r),
                f"    {final}",
                "  }",
            ]
    fwd.append("drop")  # in or out by an interface in no zone: an SRX passes nothing there
    return fwd, chains


def _nft_policy(sec: Security, p: Policy) -> str | None:
    parts: list[str] = []

    def prefixes(key: str) -> list[str] | None:
        refs = p.match.get(key, [])
        if any(r in _PREDEFINED for r in refs):
            return None
        return [sec.addresses[r] for r in refs if r in sec.addresses]

    for key, what in (("source-address", "saddr"), ("destination-address", "daddr")):
        nets = prefixes(key)
        if nets is not None:
            if not nets:
                return None
            parts.append(f"ip {what} {{ {', '.join(nets)} }}")
    apps = p.match.get("application", [])
    if apps and "any" not in apps:
        alts = [sec.applications[a] for a in apps if a in sec.applications]
        if len(alts) != 1:
            return None  # the twin's subset: one application per policy
        proto = alts[0].get("protocol", "tcp")
        parts.append(f"meta l4proto {proto}")
        if "destination-port" in alts[0]:
            parts.append(f"{proto} dport {alts[0]['destination-port']}")
    verdict = {"permit": "accept", "deny": "drop", "reject": "reject"}.get(p.then or "", "drop")
    parts += ["counter", verdict, f"comment {json.dumps(comment(p))}"]
    return " ".join(parts)


def hit_count_reply(sec: Security, packets: dict[str, int]) -> str:
    """`<get-security-policies-hit-count>`'s reply: one entry per policy, in order."""
    out = ["<policy-hit-count><logical-system-name>root-logical-system</logical-system-name>"]
    for n, p in enumerate(sec.policies, start=1):
        out.append(
            "<policy-hit-count-entry>"
            f"<policy-hit-count-index>{n}</policy-hit-count-index>"
            f"<policy-hit-count-from-zone>{p.frm}</policy-hit-count-from-zone>"
            f"<policy-hit-count-to-zone>{p.to}</policy-hit-count-to-zone>"
            f"<policy-hit-count-policy-name>{p.name}</policy-hit-count-policy-name>"
            f"<policy-hit-count-count>{packets.get(comment(p), 0)}</policy-hit-count-count>"
            f"<policy-hit-count-action>{p.then or ''}</policy-hit-count-action>"
            "</policy-hit-count-entry>"
        )
    out.append("</policy-hit-count>")
    return "".join(out)
