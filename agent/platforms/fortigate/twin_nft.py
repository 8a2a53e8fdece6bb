"""Owns the fortigate twin's packet filter: ITS policy table (ordered, first match, the implicit
deny at the end; sessions carry replies, as FortiOS's session table) as its own nftables table
`inet fortigate` in the device's namespace, and the hit counts read back from it. Written from
FortiOS's documented policy semantics, never from Cordon's renderer. Pure text in, text out;
the twin's server runs `nft`. Imports nothing of Cordon; only the twin uses it."""

from __future__ import annotations

import ipaddress
import json
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


def rule(policy: dict[str, Any], addresses: dict[str, Any], services: dict[str, Any]) -> str:
    """One policy as two nft rules: its hit count (the new sessions that reach it: every packet
    there has matched no earlier policy) and its verdict on every packet of the original
    direction. FortiOS's default `firewall-session-dirty check-all` re-checks a session against
    the policies when they change, so an established session a new deny policy matches stops;
    the verdict on every original-direction packet is that behaviour."""
    parts = []
    for key, field in (("srcintf", "iifname"), ("dstintf", "oifname")):
        got = _ifs(_names(policy.get(key)))
        if got:
            parts.append(f"{field} {got}")
    for key, field in (("srcaddr", "ip saddr"), ("dstaddr", "ip daddr")):
        got = _addr_set(_names(policy.get(key)), addresses)
        if got:
            parts.append(f"{field} {got}")
    ports = _ports(_names(policy.get("service")), services)
    if ports:
        parts.append(f"tcp dport {ports}")
    verdict = "accept" if policy.get("action") == "accept" else "drop"
    match = " ".join(parts)
    pid = int(policy["policyid"])
    hits = f'{match} ct state new counter comment "policy {pid}"'.strip()
    return f"{hits}\n    {match} {verdict}".replace("    " + " ", "    ")


def table(
    policies: list[dict[str, Any]],
    addresses: dict[str, dict[str, Any]],
    services: dict[str, dict[str, Any]],
) -> str:
    """The script that makes `table inet fortigate` exactly this policy table."""
    lines = [
        f"table inet {TABLE} {{}}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        "  chain forward {",
        "    type filter hook forward priority 0; policy drop;",
        "    ct direction reply ct state established,related accept",
    ]
    lines += [
        f"    {rule(p, addresses, services)}"
        for p in policies
        if p.get("status", "enable") == "enable"
    ]
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def hit_counts(nft_json: str) -> dict[int, int]:
    """policyid -> packets counted (new sessions' packets) from `nft -j list table inet ...`."""
    out: dict[int, int] = {}
    if not nft_json.strip():
        return out
    for item in json.loads(nft_json).get("nftables", []):
        r = item.get("rule") if isinstance(item, dict) else None
        if not r or not str(r.get("comment", "")).startswith("policy "):
            continue
        pid = int(str(r["comment"]).split()[1])
        for stmt in r.get("expr", []):
            if isinstance(stmt, dict) and isinstance(stmt.get("counter"), dict):
                out[pid] = out.get(pid, 0) + int(stmt["counter"].get("packets", 0))
    return out
