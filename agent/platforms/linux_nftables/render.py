"""Owns the linux_nftables renderer: an isolation state as the whole `table inet cordon`, loaded
atomically (declare, delete, redefine), so what the device runs is exactly the state; and the
exact rule comments the read-back expects. Pure: imports the plan's state types only.

A reply accept (`NftRule.reply`) is stateful and takes two lines: packets of a connection the
firewall's connection tracking saw opened by the client (`ct state established,related`), and
`resume`: a connection it first sees mid-stream from the server's side, an acknowledgement that
opens nothing (`ct state new tcp flags & (syn | ack) == ack`). The second one keeps a flow that was
open before the cut working when the firewall tracked no connection until our table loaded (a
table with `ct` rules turns tracking on in its namespace) and the server speaks first: without it
the server's packets are dropped until the client sends something. A SYN from the service's port
matches neither: the server side can open no connection to the client.
"""

from __future__ import annotations

import hashlib

from agent.network.state import DeviceState, NftRule
from agent.platforms.linux_nftables import TABLE as TABLE  # noqa: PLC0414 (the registration owns it)


def rule_id(rule: NftRule) -> str:
    """A short stable id of a rule's match and verdict: makes every comment unique, so the read
    back can check the exact set of rules on the device."""
    key = repr(rule.id_key()).encode()
    return hashlib.sha256(key).hexdigest()[:8]


RESUME = "resume"


def variants(rule: NftRule) -> tuple[str, ...]:
    """The lines a rule takes in a chain: "" (the rule), and RESUME for a reply accept."""
    return ("", RESUME) if rule.reply else ("",)


def comment(rule: NftRule, chain: str, variant: str = "") -> str:
    suffix = "".join(f" {s}" for s in (variant, "" if chain == "forward" else chain) if s)
    return f"{rule.tag[:80]} #{rule_id(rule)}{suffix}"


def counted_as(rule: NftRule) -> str:
    """The comment a counting rule's packets are keyed by (it counts in the forward chain)."""
    return comment(rule, "forward")


def chains(state: DeviceState) -> list[tuple[str, list[NftRule]]]:
    """Forward holds every rule but the local exceptions; a cut interface (a drop by one
    interface alone) also drops the device's own traffic, in input (`iif`) and output (`oif`),
    after the local exceptions of that chain (`NftRule.local`: the agent's management of the
    firewall itself, and its stateful replies)."""
    rules = state.ordered_rules()
    forward = [r for r in rules if not r.local]
    local_in = [r for r in rules if r.own and r.iif]
    local_out = [r for r in rules if r.own and r.oif]
    return [("forward", forward), ("input", local_in), ("output", local_out)]


def nft_comments(state: DeviceState) -> frozenset[str]:
    """The exact comments `table inet cordon` holds in `state` (for read-back)."""
    return frozenset(
        comment(r, chain, v) for chain, rules in chains(state) for r in rules for v in variants(r)
    )


def nft_rule(rule: NftRule, chain: str = "forward", variant: str = "") -> str:
    parts = []
    if rule.iif:
        parts.append(f'iifname "{rule.iif}"')
    if rule.oif:
        parts.append(f'oifname "{rule.oif}"')
    if rule.saddr:
        parts.append(f"ip saddr {rule.saddr}")
    if rule.daddr:
        parts.append(f"ip daddr {rule.daddr}")
    if rule.sport is not None:
        parts.append(f"tcp sport {rule.sport}")
    if rule.dport is not None:
        parts.append(f"tcp dport {rule.dport}")
    if rule.reply and variant == RESUME:
        parts.append("ct state new tcp flags & (syn | ack) == ack")
    elif rule.reply:
        parts.append("ct state established,related")
    if rule.verdict == "count":
        parts.append("ct state new counter")
    else:
        parts.append(f"counter {rule.verdict}")
    parts.append(f'comment "{comment(rule, chain, variant)}"')
    return " ".join(parts)


def nft_table(state: DeviceState) -> str:
    """The script that makes `table inet cordon` exactly `state` (removes it when empty).

    Traffic to and from the device itself on a cut interface is dropped too (input/output),
    so a cut link cannot be used to reach the firewall either, but for its local exceptions
    (accepted first: the agent's management of the firewall through that link)."""
    lines = [f"table inet {TABLE} {{}}", f"delete table inet {TABLE}"]
    if not state.rules:
        return "\n".join(lines) + "\n"
    lines.append(f"table inet {TABLE} {{")
    for chain, rules in chains(state):
        lines.append(f"  chain {chain} {{")
        lines.append(f"    type filter hook {chain} priority 0; policy accept;")
        lines += [f"    {nft_rule(r, chain, v)}" for r in rules for v in variants(r)]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
