"""Owns the read-back of the traffic that passed the agent's own nftables rules: packets and bytes
of the anonymous `counter` every rule of `table inet cordon` carries (`render.nft_rule`), found by
the rule id at the end of its comment (`<tag> #<id>[ resume]`, forward chain), so a rule is found
whatever tag the step that planned it gave it. A reply accept takes two lines (the rule and its
`resume` line): their counts are summed. Pure: imports this folder's renderer and parser, the
plan's rule type and the capability's value type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, TypeGuard

from agent.network.state import NftRule
from agent.platforms.capabilities import Traffic
from agent.platforms.linux_nftables import parse, render

FAMILY = "inet"
# `<tag> #<8 hex>` or `<tag> #<8 hex> resume` (forward chain; input/output add their chain name)
_ID = re.compile(rf"#([0-9a-f]{{8}})(?: {render.RESUME})?$")


def counter_traffic(expr: str) -> Traffic | None:
    """Packets and bytes of a rule's first anonymous `counter` statement (its expressions as
    `nft -j` gives them, JSON text); None when the rule has none."""
    try:
        statements: Any = json.loads(expr)
    except json.JSONDecodeError as exc:
        raise ValueError(f"rule expressions are not JSON: {exc.msg}") from None
    if not isinstance(statements, list):
        raise ValueError("rule expressions are not a list")
    for stmt in statements:
        counter = stmt.get("counter") if isinstance(stmt, dict) else None
        if isinstance(counter, dict):
            packets, octets = counter.get("packets"), counter.get("bytes")
            if _count(packets) and _count(octets):
                return Traffic(packets, octets)
            raise ValueError(f"counter without packet and byte counts: {counter!r}")
    return None


def _count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def by_id(table: parse.NftRuleset | None) -> dict[str, Traffic]:
    """Counted traffic of each rule id of the forward chain of `table inet cordon` (its lines
    summed); {} when the table is absent."""
    out: dict[str, Traffic] = {}
    if table is None:
        return out
    for rule in table.rules_of(FAMILY, render.TABLE):
        m = _ID.search(rule.comment or "")
        if rule.chain != "forward" or m is None:
            continue
        got = counter_traffic(rule.expr)
        if got is None:
            continue
        was = out.get(m.group(1), Traffic(0, 0))
        out[m.group(1)] = Traffic(was.packets + got.packets, was.bytes + got.bytes)
    return out


def per_rule(table: parse.NftRuleset | None, rules: Sequence[NftRule]) -> list[Traffic | None]:
    """`RuleTraffic.rule_traffic` from one read of the table: None for a rule it does not hold."""
    found = by_id(table)
    return [found.get(render.rule_id(r)) for r in rules]
