"""Owns the evaluation of a live nftables ruleset (`nft -j list ruleset`) for one IPv4 TCP packet
at the forward hook: what the firewall itself would do with a flow, read from the rules it runs
(Cordon's `table inet cordon` AND every other table's forward chains beside it).

Semantics (nftables' own): every base chain of the forward hook (families inet and ip) sees the
packet, in priority order; `accept` ends that chain only (the next base chain still sees it), a
`drop` or `reject` anywhere is final; at a base chain's end its policy applies. `jump` pushes a
return point, `goto` does not, `return` (or the end of a regular chain) goes back to the last
return point (or to the base chain's policy). `continue`, `counter`, `log`, comments and the setting
of a mark (`ct mark set`, `meta mark set`: a later match on a mark is not evaluated) change
nothing.

Only a subset of expressions is understood: interface names (`iifname`/`oifname`, with `*`
wildcards), `meta l4proto`/`nfproto`, `ip saddr`/`daddr`/`protocol`, `tcp sport`/`dport`/`flags`
(also through `&` masks), `ct state`, `ct direction`; values as literals, prefixes, ranges,
anonymous sets and static named sets; operators ==, !=, in, <, >, <=, >=. A rule whose
understood matches already fail does not match, whatever else it holds. Otherwise an expression
outside the subset (a dynamic set, a limit, a mark, a queue, an unknown port of the packet) makes
the answer UNKNOWN, naming it: never a guess.

Pure: imports the capability types only (and the standard library)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.platforms.capabilities import FlowDecision, FlowQuery, Verdict

FAMILIES = ("inet", "ip")
TCP_FLAGS = {"fin": 1, "syn": 2, "rst": 4, "psh": 8, "ack": 16, "urg": 32, "ecn": 64, "cwr": 128}
CT_STATES = {"invalid": 1, "established": 2, "related": 4, "new": 8, "untracked": 64}
IPPROTO = {"tcp": 6, "udp": 17, "icmp": 1}
MAX_JUMPS = 64  # nftables' own limit on chain depth is lower; a loop is refused at load


class Unknown(Exception):
    """An expression outside the evaluator's subset (message: which, where)."""


@dataclass(frozen=True)
class Packet:
    iif: str
    oif: str
    src: str
    dst: str
    sport: int | None  # None: the client's ephemeral port (not known in advance)
    dport: int | None
    ct_state: str  # "new" for a request's first packet, "established" for a reply
    tcp_flags: int
    direction: str = "original"  # `ct direction`: "reply" for a reply

    @classmethod
    def of(cls, q: FlowQuery) -> Packet:
        if q.reply:
            return cls(
                q.in_if, q.out_if, q.src, q.dst, q.sport, q.dport, "established", 2 | 16, "reply"
            )
        return cls(q.in_if, q.out_if, q.src, q.dst, q.sport, q.dport, "new", 2)


@dataclass(frozen=True)
class Chain:
    family: str
    table: str
    name: str
    hook: str | None
    prio: int
    policy: str
    rules: tuple[tuple[int, tuple[Any, ...]], ...]  # (handle, expressions)

    @property
    def where(self) -> str:
        return f"{self.family} {self.table} {self.name}"


def load(text: str) -> dict[tuple[str, str, str], Chain]:
    """The chains of `nft -j list ruleset`, by (family, table, name). ValueError when it is not
    that output."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"nft JSON output is not JSON: {exc.msg}") from None
    items = data.get("nftables") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ValueError("nft JSON output has no 'nftables' list")
    heads: dict[tuple[str, str, str], dict[str, Any]] = {}
    sets: dict[tuple[str, str, str], Any] = {}
    rules: dict[tuple[str, str, str], list[tuple[int, tuple[Any, ...]]]] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("set"), dict):
            st = item["set"]
            flags = st.get("flags") or []
            if not {"dynamic", "timeout"} & set(flags if isinstance(flags, list) else [flags]):
                key3 = (str(st["family"]), str(st["table"]), str(st["name"]))
                sets[key3] = {"set": list(st.get("elem", []))}
        elif isinstance(item.get("chain"), dict):
            c = item["chain"]
            heads[(str(c["family"]), str(c["table"]), str(c["name"]))] = c
        elif isinstance(item.get("rule"), dict):
            r = item["rule"]
            key = (str(r["family"]), str(r["table"]), str(r["chain"]))
            exprs = tuple(_with_sets(e, key[0], key[1], sets) for e in r.get("expr", []))
            rules.setdefault(key, []).append((int(r.get("handle", 0)), exprs))
    out = {}
    for key, c in heads.items():
        prio = c.get("prio", 0)
        out[key] = Chain(
            *key,
            hook=c.get("hook"),
            prio=int(prio) if isinstance(prio, int) else 0,
            policy=str(c.get("policy", "accept")),
            rules=tuple(rules.get(key, [])),
        )
    return out


def _with_sets(e: Any, family: str, table: str, sets: Mapping[tuple[str, str, str], Any]) -> Any:
    """`e` with every reference to a static named set of its table ("@name") replaced by the
    set's elements (a dynamic set, or one not listed, stays a reference: UNKNOWN)."""
    if isinstance(e, str) and e.startswith("@"):
        return sets.get((family, table, e[1:]), e)
    if isinstance(e, dict):
        return {k: _with_sets(v, family, table, sets) for k, v in e.items()}
    if isinstance(e, list):
        return [_with_sets(v, family, table, sets) for v in e]
    return e


def forward_chains(chains: Mapping[tuple[str, str, str], Chain]) -> list[Chain]:
    """The base chains an IPv4 packet routed through the device crosses, in priority order."""
    base = [c for c in chains.values() if c.hook == "forward" and c.family in FAMILIES]
    return sorted(base, key=lambda c: c.prio)


def decide(chains: Mapping[tuple[str, str, str], Chain], query: FlowQuery) -> FlowDecision:
    """What the forward hook does with the packet `query` describes."""
    if query.protocol != "tcp":
        return FlowDecision(Verdict.UNKNOWN, f"protocol {query.protocol} is not evaluated")
    pkt = Packet.of(query)
    unknown: list[str] = []
    accepted: list[str] = []
    for base in forward_chains(chains):
        try:
            verdict, why = _run_base(chains, base, pkt)
        except Unknown as exc:
            unknown.append(str(exc))
            continue
        if verdict == "drop":
            return FlowDecision(Verdict.DROP, why)
        accepted.append(why)
    if unknown:
        return FlowDecision(Verdict.UNKNOWN, "; ".join(unknown))
    return FlowDecision(Verdict.ACCEPT, "; ".join(accepted) or "no forward chain")


def _run_base(
    chains: Mapping[tuple[str, str, str], Chain], base: Chain, pkt: Packet
) -> tuple[str, str]:
    """(accept|drop, what decided) for one base chain."""
    stack: list[tuple[Chain, int]] = []  # return points: (chain, index of the next rule)
    chain, i, jumps = base, 0, 0
    while True:
        if i >= len(chain.rules):  # a chain's end: back to the last jump, else the policy
            if chain is base or not stack:
                return _policy(base)
            chain, i = stack.pop()
            continue
        handle, exprs = chain.rules[i]
        i += 1
        where = f"{chain.where} rule handle {handle}"
        verdict = _rule(exprs, pkt, where)
        if verdict is None or verdict == ("continue", None):
            continue
        kind, target = verdict
        if kind in ("accept", "drop"):
            return kind, f"{kind} by {where}"
        if kind == "return":
            if not stack:
                return _policy(base)
            chain, i = stack.pop()
            continue
        if kind in ("jump", "goto"):
            jumps += 1
            nxt = chains.get((chain.family, chain.table, str(target)))
            if nxt is None or jumps > MAX_JUMPS:
                raise Unknown(f"{where}: {kind} to chain {target} not found (or looping)")
            if kind == "jump":
                stack.append((chain, i))
            chain, i = nxt, 0
            continue
        raise Unknown(f"{where}: verdict {kind} is not evaluated")


def _policy(base: Chain) -> tuple[str, str]:
    return ("drop" if base.policy == "drop" else "accept"), f"policy {base.policy} of {base.where}"


def _rule(exprs: Sequence[Any], pkt: Packet, where: str) -> tuple[str, object] | None:
    """The rule's verdict when it matches the packet, None when it does not (or has none)."""
    unknown: str | None = None
    verdict: tuple[str, object] | None = None
    for e in exprs:
        if not isinstance(e, dict) or len(e) != 1:
            unknown = unknown or f"{where}: expression {json.dumps(e)[:80]}"
            continue
        ((key, body),) = e.items()
        if key == "match":
            try:
                if not _match(body, pkt):
                    return None  # a known match fails: the rule does not apply, whatever else
            except Unknown as exc:
                unknown = unknown or f"{where}: {exc}"
        elif key in ("counter", "log", "comment"):
            continue
        elif key == "mangle" and _sets_a_mark(body):
            continue  # a mark only matters to a later match on it, which is not evaluated
        elif key in ("accept", "drop", "continue", "return"):
            verdict = (key, None)
        elif key == "reject":
            verdict = ("drop", None)
        elif key in ("jump", "goto") and isinstance(body, dict):
            verdict = (key, body.get("target"))
        else:
            unknown = unknown or f"{where}: statement '{key}' is not evaluated"
    if unknown is not None:
        raise Unknown(unknown)
    return verdict


def _sets_a_mark(body: object) -> bool:
    """`ct mark set N` / `meta mark set N`: changes no field a rule here matches on (a match on
    a mark is UNKNOWN), unlike a mangle of the packet's addresses or ports."""
    key = body.get("key") if isinstance(body, dict) else None
    if not isinstance(key, dict) or len(key) != 1:
        return False
    ((kind, sel),) = key.items()
    return kind in ("ct", "meta") and isinstance(sel, dict) and sel.get("key") == "mark"


def _match(body: Mapping[str, Any], pkt: Packet) -> bool:  # noqa: PLR0911 - one per operator
    op = body.get("op", "==")
    left, right = body.get("left"), body.get("right")
    kind, value = _field(left, pkt)
    if kind == "flags":
        table = TCP_FLAGS if _is_tcp_flags(left) else CT_STATES
        if op in ("==", "!=") and (isinstance(right, list) or "set" in _keys(right)):
            inside = any(value == _flags(r, table) for r in _elements(right))
            return bool(inside) if op == "==" else not inside
        want = _flags(right, table)
        if op == "in":
            return bool(value & want)
        if op == "==":
            return bool(value == want)
        if op == "!=":
            return bool(value != want)
        raise Unknown(f"operator {op} on flags")
    if op in ("==", "in"):
        return _member(kind, value, right)
    if op == "!=":
        return not _member(kind, value, right)
    if op in ("<", ">", "<=", ">=") and kind == "int" and isinstance(right, int):
        x = int(value)
        return {"<": x < right, ">": x > right, "<=": x <= right, ">=": x >= right}[op]
    raise Unknown(f"operator {op} on {json.dumps(left)[:60]}")


def _keys(x: Any) -> tuple[str, ...]:
    return tuple(x) if isinstance(x, dict) else ()


def _elements(right: Any) -> list[Any]:
    return list(right["set"] if isinstance(right, dict) else right)


def _is_tcp_flags(left: Any) -> bool:
    text = json.dumps(left)
    return '"flags"' in text and '"tcp"' in text


def _field(left: Any, pkt: Packet) -> tuple[str, Any]:  # noqa: PLR0911, PLR0912 - one per field
    """(kind, the packet's value) of a match's left-hand side."""
    if isinstance(left, dict) and "meta" in left:
        key = left["meta"].get("key")
        if key == "iifname":
            return "name", pkt.iif
        if key == "oifname":
            return "name", pkt.oif
        if key == "l4proto":
            return "proto", "tcp"
        if key == "nfproto":
            return "proto", "ipv4"
        raise Unknown(f"meta {key}")
    if isinstance(left, dict) and "payload" in left:
        p = left["payload"]
        proto, fld = p.get("protocol"), p.get("field")
        if proto == "ip" and fld == "saddr":
            return "addr", pkt.src
        if proto == "ip" and fld == "daddr":
            return "addr", pkt.dst
        if proto == "ip" and fld == "protocol":
            return "proto", "tcp"
        if proto == "tcp" and fld in ("sport", "dport"):
            port = pkt.sport if fld == "sport" else pkt.dport
            if port is None:
                raise Unknown(f"tcp {fld} (the client's ephemeral port is not known)")
            return "int", port
        if proto == "tcp" and fld == "flags":
            return "flags", pkt.tcp_flags
        if proto in ("udp", "icmp", "ip6", "sctp"):
            return "never", None  # another protocol's header: a TCP/IPv4 packet has none
        raise Unknown(f"payload {proto} {fld}")
    if isinstance(left, dict) and "ct" in left:
        if left["ct"].get("key") == "state" and "dir" not in left["ct"]:
            return "flags", CT_STATES[pkt.ct_state]
        if left["ct"].get("key") == "direction" and "dir" not in left["ct"]:
            return "name", pkt.direction
        raise Unknown(f"ct {left['ct'].get('key')}")
    if isinstance(left, dict) and "&" in left:
        inner, mask = left["&"]
        kind, value = _field(inner, pkt)
        if kind != "flags":
            raise Unknown("a mask on something other than flags")
        table = TCP_FLAGS if _is_tcp_flags(inner) else CT_STATES
        return "flags", value & _flags(mask, table)
    raise Unknown(f"match on {json.dumps(left)[:60]}")


def _flags(right: Any, table: Mapping[str, int]) -> int:
    if isinstance(right, int):
        return right
    if isinstance(right, str):
        if right not in table:
            raise Unknown(f"flag {right}")
        return table[right]
    if isinstance(right, list):
        return sum(_flags(r, table) for r in right)
    if isinstance(right, dict) and "set" in right:
        return _flags(right["set"], table)
    if isinstance(right, dict) and "|" in right:
        return sum(_flags(r, table) for r in right["|"])
    raise Unknown(f"flags value {json.dumps(right)[:60]}")


def _member(kind: str, value: Any, right: Any) -> bool:  # noqa: PLR0911, PLR0912 - per kind
    """Does the packet's `value` equal `right` (a literal, a prefix, a range, a set)?"""
    if kind == "never":
        return False
    if isinstance(right, dict) and "set" in right:
        return any(_member(kind, value, r) for r in right["set"])
    if isinstance(right, list):
        return any(_member(kind, value, r) for r in right)
    if isinstance(right, str) and right.startswith("@"):
        raise Unknown(f"named set {right}")
    if kind == "name" and isinstance(right, str):
        if right.endswith("*") and not right.endswith("\\*"):
            return str(value).startswith(right[:-1])
        return str(value) == right.replace("\\*", "*")
    if kind == "proto":
        return str(value) == str(right) or (isinstance(right, int) and IPPROTO.get(value) == right)
    if kind == "addr":
        addr = ipaddress.ip_address(value)
        if isinstance(right, str):
            return addr in ipaddress.ip_network(right, strict=False)
        if isinstance(right, dict) and "prefix" in right:
            p = right["prefix"]
            return addr in ipaddress.ip_network(f"{p['addr']}/{p['len']}", strict=False)
        if isinstance(right, dict) and "range" in right:
            lo, hi = (int(ipaddress.IPv4Address(x)) for x in right["range"])
            return lo <= int(addr) <= hi
    if kind == "int":
        if isinstance(right, int):
            return int(value) == right
        if isinstance(right, dict) and "range" in right:
            lo, hi = right["range"]
            return int(lo) <= int(value) <= int(hi)
    raise Unknown(f"value {json.dumps(right)[:60]}")
