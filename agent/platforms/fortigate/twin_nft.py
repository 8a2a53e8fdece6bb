"""Owns the fortigate twin's packet filter: ITS policy table (ordered, first match, the implicit
deny at the end; sessions carry replies, as FortiOS's session table) and ITS local-in policies
(traffic to the unit itself) as its own nftables table `inet fortigate` in the device's
namespace (forward and input chains), and the hit counts read back from it. Written from
FortiOS's documented policy semantics, never from Cordon's renderer. Pure text in, text out;
the twin's server runs `nft`. Imports nothing of Cordon; only the twin uses it."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

TABLE = "fortigate"


def _names(value: Any) -> list[str]:
    return [str(v["name"]) for v in value or [] if isinstance(v, dict) and "name" in v]


def _addr_set(names: list[str], addresses: dict[str, dict[str, Any]]) -> str | None:
    """An nft set of the members, None for `all` (any address)."""
    if "all" in names:
        return None
    nets = []
    for n in names:
        addr, _, mask = str(addresses[n].get("subnet", "0.0.0.0 0.0.0.0")).partition(" ")
        nets.append(str(ipaddress.IPv4Network(f"{addr}/{mask}", strict=False)))
    return "{ " + ", ".join(sorted(nets)) + " }"


def _ports(names: list[str], services: dict[str, dict[str, Any]]) -> str | None:
    if "ALL" in names:
        return None
    ports: list[str] = []
    for n in names:
        for rng in str(services[n].get("tcp-portrange", "")).split():
            ports.append(rng.split(":", 1)[0])
    return "{ " + ", ".join(ports) + " }"


def _ifs(names: list[str]) -> str | None:
    if "any" in names:
        return None
    return "{ " + ", ".join(f'"{n}"' for n in names) + " }"


def _match(policy: dict[str, Any], addresses: dict[str, Any], services: dict[str, Any]) -> str:
    """A policy's match (the interfaces it names, addresses, TCP ports) as nft expressions ("" for
    any)."""
    parts = []
    for key, field in (("srcintf", "iifname"), ("dstintf", "oifname")):
        got = _ifs(_names(policy.get(key))) if key in policy else None
        if got:
            parts.append(f"{field} {got}")
    for key, field in (("srcaddr", "ip saddr"), ("dstaddr", "ip daddr")):
        got = _addr_set(_names(policy.get(key)), addresses)
        if got:
            parts.append(f"{field} {got}")
    ports = _ports(_names(policy.get("service")), services)
    if ports:
        parts.append(f"tcp dport {ports}")
    return " ".join(parts)


def counter_name(policyid: int) -> str:
    return f"policy{policyid}"


def traffic_name(policyid: int) -> str:
    """The counter of every packet of the sessions an accept policy let through, both ways
    (FortiOS's per-policy `packets` and `bytes`)."""
    return f"traffic{policyid}"


def rule(policy: dict[str, Any], addresses: dict[str, Any], services: dict[str, Any]) -> list[str]:
    """One firewall policy as two nft rules: its hit count (the new sessions that reach it:
    every packet there has matched no earlier policy), a named counter that outlives reloads of
    the chain, and its verdict on every packet of the original direction. FortiOS's default
    `firewall-session-dirty check-all` re-checks a session against the policies when they
    change, so an established session a new deny policy matches stops; the verdict on every
    original-direction packet is that behaviour."""
    match = _match(policy, addresses, services)
    pid = int(policy["policyid"])
    new = f'{match} ct state new counter name "{counter_name(pid)}"'.strip()
    if policy.get("action") != "accept":
        return [new, f"{match} drop".strip()]
    # its sessions' original-direction packets are counted here and their connection marked
    # with the policy, so their replies are counted too (`reply_rule`)
    return [new, f'{match} counter name "{traffic_name(pid)}" ct mark set {pid} accept'.strip()]


def reply_rule(policyid: int) -> str:
    """Replies of the sessions an accept policy let through: counted to it, accepted."""
    return (
        f"ct direction reply ct state established,related ct mark {policyid} "
        f'counter name "{traffic_name(policyid)}" accept'
    )


def local_in_rule(
    policy: dict[str, Any], addresses: dict[str, Any], services: dict[str, Any]
) -> str:
    """One local-in policy (traffic to the FortiGate itself) as an nft input rule: its incoming
    interface (`intf`, one name in FortiOS 7.0/7.2; `any`: every one), addresses, service."""
    parts = []
    intf = str(policy.get("intf", "any"))
    if intf != "any":
        parts.append(f'iifname "{intf}"')
    fields = {k: policy.get(k) for k in ("srcaddr", "dstaddr", "service")}
    parts.append(_match(fields, addresses, services))
    verdict = "accept" if policy.get("action") == "accept" else "drop"
    return " ".join(p for p in [*parts, verdict] if p)


@dataclass(frozen=True)
class Ruleset:
    """The twin's filtering for one configuration: the forward chain (firewall policies), the
    input chain (local-in policies) and the named counters the forward chain uses."""

    forward: tuple[str, ...]
    input: tuple[str, ...]
    counters: frozenset[str]


def ruleset(
    policies: list[dict[str, Any]],
    local_in: list[dict[str, Any]],
    addresses: dict[str, dict[str, Any]],
    services: dict[str, dict[str, Any]],
) -> Ruleset:
    """The filtering the configuration asks for: the enabled policies in their order (first
    match, the implicit deny at the end; replies by the session table), the enabled local-in
    policies in theirs (no match: the unit accepts; replies to the unit's own sessions pass)."""
    enabled = [p for p in policies if p.get("status", "enable") == "enable"]
    accepts = [int(p["policyid"]) for p in enabled if p.get("action") == "accept"]
    forward = [reply_rule(pid) for pid in accepts]
    forward.append("ct direction reply ct state established,related accept")
    counters = {traffic_name(pid) for pid in accepts}
    for p in enabled:
        forward += rule(p, addresses, services)
        counters.add(counter_name(int(p["policyid"])))
    inp = ["ct direction reply ct state established,related accept"]
    inp += [
        local_in_rule(p, addresses, services)
        for p in local_in
        if p.get("status", "enable") == "enable"
    ]
    return Ruleset(tuple(forward), tuple(inp), frozenset(counters))


def script(new: Ruleset, old: Ruleset | None) -> str:
    """The script that makes `table inet fortigate` exactly `new`, in one transaction. From
    nothing (`old` None) the table is made afresh; else its chains are flushed and refilled,
    the counters of policies still there kept (declaring an existing counter keeps its value),
    those of policies gone deleted."""
    lines = [f"table inet {TABLE} {{}}", f"delete table inet {TABLE}"] if old is None else []
    lines += [
        f"table inet {TABLE} {{",
        *(f"  counter {c} {{}}" for c in sorted(new.counters)),
        "  chain forward {",
        "    type filter hook forward priority 0; policy drop;",
        "  }",
        "  chain input {",
        "    type filter hook input priority 0; policy accept;",
        "  }",
        "}",
        f"flush chain inet {TABLE} forward",
        f"flush chain inet {TABLE} input",
        f"table inet {TABLE} {{",
        "  chain forward {",
        *(f"    {r}" for r in new.forward),
        "  }",
        "  chain input {",
        *(f"    {r}" for r in new.input),
        "  }",
        "}",
    ]
    if old is not None:
        lines += [f"delete counter inet {TABLE} {c}" for c in sorted(old.counters - new.counters)]
    return "\n".join(lines) + "\n"


def traffic_counts(nft_json: str) -> dict[int, tuple[int, int]]:
    """policyid -> (packets, bytes) of its sessions, both ways, from
    `nft -j list counters table inet fortigate`."""
    out: dict[int, tuple[int, int]] = {}
    if not nft_json.strip():
        return out
    for item in json.loads(nft_json).get("nftables", []):
        c = item.get("counter") if isinstance(item, dict) else None
        name = str(c.get("name", "")) if isinstance(c, dict) else ""
        if isinstance(c, dict) and name.startswith("traffic") and name[7:].isdigit():
            out[int(name[7:])] = (int(c.get("packets", 0)), int(c.get("bytes", 0)))
    return out


def hit_counts(nft_json: str) -> dict[int, int]:
    """policyid -> packets counted (new sessions' packets) from
    `nft -j list counters table inet fortigate`."""
    out: dict[int, int] = {}
    if not nft_json.strip():
        return out
    for item in json.loads(nft_json).get("nftables", []):
        c = item.get("counter") if isinstance(item, dict) else None
        name = str(c.get("name", "")) if isinstance(c, dict) else ""
        if isinstance(c, dict) and name.startswith("policy") and name[6:].isdigit():
            out[int(name[6:])] = int(c.get("packets", 0))
    return out


def _in_addresses(ip: str, names: list[str], addresses: dict[str, dict[str, Any]]) -> bool:
    if "all" in names:
        return True
    addr = ipaddress.IPv4Address(ip)
    for n in names:
        net, _, mask = str(addresses[n].get("subnet", "0.0.0.0 0.0.0.0")).partition(" ")
        if addr in ipaddress.IPv4Network(f"{net}/{mask}", strict=False):
            return True
    return False


def _in_services(port: int, names: list[str], services: dict[str, dict[str, Any]]) -> bool:
    if "ALL" in names:
        return True
    for n in names:
        for rng in str(services[n].get("tcp-portrange", "")).split():
            low, _, high = rng.split(":", 1)[0].partition("-")
            if int(low) <= port <= int(high or low):
                return True
    return False


def lookup(
    policies: list[dict[str, Any]],
    addresses: dict[str, dict[str, Any]],
    services: dict[str, dict[str, Any]],
    *,
    srcintf: str,
    dstintf: str,
    src: str,
    dst: str,
    port: int,
) -> int:
    """The policy a new TCP session would hit (`monitor/firewall/policy-lookup`): the first
    enabled policy, in the table's order, whose interfaces, addresses and service match; 0 (the
    implicit deny) when none does. The same table and semantics as `ruleset`."""
    for p in policies:
        if p.get("status", "enable") != "enable":
            continue
        ins, outs = _names(p.get("srcintf")), _names(p.get("dstintf"))
        if "any" not in ins and srcintf not in ins:
            continue
        if "any" not in outs and dstintf not in outs:
            continue
        if not _in_addresses(src, _names(p.get("srcaddr")), addresses):
            continue
        if not _in_addresses(dst, _names(p.get("dstaddr")), addresses):
            continue
        if _in_services(port, _names(p.get("service")), services):
            return int(p["policyid"])
    return 0
