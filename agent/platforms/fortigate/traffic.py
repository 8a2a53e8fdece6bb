"""Owns the read-back of the traffic that passed Cordon's FortiGate policies: FortiOS counts, per
firewall policy, the packets and bytes of the sessions it let through, both directions
(`GET /api/v2/monitor/firewall/policy`: `packets`, `bytes`, beside `hit_count`). A rule's policy
is found by its name (`cordon-<rule id>`, see `render.policies`), whatever tag the step that
planned it gave it. A reply accept renders as no policy (its session carries the replies, counted
with the request's policy): None for it, as for a rule the device does not hold. Pure: imports
this folder's renderer, the plan's rule type and the capability's value type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agent.network.state import NftRule
from agent.platforms.capabilities import Traffic
from agent.platforms.fortigate.render import PREFIX, rule_id


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"policy counter {what} is not a count: {value!r}")
    return value


def per_rule(
    policies: Sequence[Mapping[str, Any]],
    monitor: Sequence[Mapping[str, Any]],
    rules: Sequence[NftRule],
) -> list[Traffic | None]:
    """`RuleTraffic.rule_traffic` from one read of the policy table (`cmdb/firewall/policy`) and
    of its counters (`monitor/firewall/policy`)."""
    ids = {str(p.get("name", "")): p.get("policyid") for p in policies}
    seen = {h.get("policyid"): h for h in monitor}
    out: list[Traffic | None] = []
    for rule in rules:
        pid = None if rule.reply or rule.verdict != "accept" else ids.get(PREFIX + rule_id(rule))
        counted = seen.get(pid) if pid is not None else None
        if counted is None:
            out.append(None)
            continue
        out.append(
            Traffic(
                _count(counted.get("packets"), "packets"), _count(counted.get("bytes"), "bytes")
            )
        )
    return out
