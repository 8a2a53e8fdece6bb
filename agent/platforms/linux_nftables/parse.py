"""Owns the linux_nftables read-back parsers (ip -j link, nft -j, the ruleset text, the comments
of our table's rules), the scope check of our nft scripts and a ruleset backup's own lines (the
baseline compares them). Pure: imports only the driver contract's types; raises
ValueError on unparseable input."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from agent.drivers.base import InterfaceState

# --------------------------------------------------------------------- Linux


def parse_ip_link_json(text: str) -> tuple[InterfaceState, ...]:
    """Interfaces from `ip -j [-s] link show`: admin = UP flag, oper = operstate (or LOWER_UP
    when the kernel says UNKNOWN, as for loopback), counters from `-s` when present."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"'ip -j link' output is not JSON: {exc.msg}") from None
    if not isinstance(data, list):
        raise ValueError("'ip -j link' output is not a list")
    out = []
    for item in data:
        if not isinstance(item, dict) or "ifname" not in item:
            raise ValueError("'ip -j link' entry without ifname")
        flags = [str(f) for f in item.get("flags", [])]
        state = str(item.get("operstate", "UNKNOWN"))
        oper = state == "UP" or (state == "UNKNOWN" and "LOWER_UP" in flags)
        stats = item.get("stats64") or item.get("stats") or {}
        rx = stats.get("rx", {}) if isinstance(stats, dict) else {}
        tx = stats.get("tx", {}) if isinstance(stats, dict) else {}
        out.append(
            InterfaceState(
                name=str(item["ifname"]),
                admin_up="UP" in flags,
                oper_up=oper,
                index=int(item["ifindex"]) if "ifindex" in item else None,
                in_octets=int(rx["bytes"]) if "bytes" in rx else None,
                out_octets=int(tx["bytes"]) if "bytes" in tx else None,
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class NftRule:
    family: str
    table: str
    chain: str
    handle: int
    comment: str | None
    expr: str  # the rule's expressions as canonical JSON, for comparison


@dataclass(frozen=True)
class NftChain:
    family: str
    table: str
    name: str
    hook: str | None
    policy: str | None


@dataclass(frozen=True)
class NftRuleset:
    """A parsed `nft -j list ruleset` (or `list table`): tables, chains and rules."""

    tables: tuple[tuple[str, str], ...]
    chains: tuple[NftChain, ...]
    rules: tuple[NftRule, ...]

    def has_table(self, family: str, name: str) -> bool:
        return (family, name) in self.tables

    def rules_of(self, family: str, table: str) -> tuple[NftRule, ...]:
        return tuple(r for r in self.rules if (r.family, r.table) == (family, table))

    def chains_of(self, family: str, table: str) -> tuple[NftChain, ...]:
        return tuple(c for c in self.chains if (c.family, c.table) == (family, table))


def parse_nft_json(text: str) -> NftRuleset:
    """Parse `nft -j list ruleset|table ...` output (an empty output is an empty ruleset)."""
    if not text.strip():
        return NftRuleset((), (), ())
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"nft JSON output is not JSON: {exc.msg}") from None
    items = data.get("nftables") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ValueError("nft JSON output has no 'nftables' list")
    tables: list[tuple[str, str]] = []
    chains: list[NftChain] = []
    rules: list[NftRule] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if "table" in item:
            t = item["table"]
            tables.append((str(t["family"]), str(t["name"])))
        elif "chain" in item:
            c = item["chain"]
            chains.append(
                NftChain(
                    str(c["family"]),
                    str(c["table"]),
                    str(c["name"]),
                    c.get("hook"),
                    c.get("policy"),
                )
            )
        elif "rule" in item:
            r = item["rule"]
            rules.append(
                NftRule(
                    family=str(r["family"]),
                    table=str(r["table"]),
                    chain=str(r["chain"]),
                    handle=int(r["handle"]),
                    comment=r.get("comment"),
                    expr=json.dumps(r.get("expr", []), sort_keys=True),
                )
            )
    return NftRuleset(tuple(tables), tuple(chains), tuple(rules))


# --------------------------------------------------------------------- nft script scope

_NFT_VERBS = frozenset({"add", "create", "insert", "replace", "delete", "destroy", "flush"})
_NFT_OBJECTS = frozenset(
    {
        "table",
        "chain",
        "rule",
        "set",
        "map",
        "element",
        "counter",
        "quota",
        "limit",
        "flowtable",
        "secmark",
        "synproxy",
    }
)


def _nft_statements(text: str) -> Iterator[tuple[int, str]]:  # noqa: PLR0912 - one scanner
    """Top-level statements of an nft script with their line numbers (blocks kept whole,
    comments dropped, ';' and newlines separate statements at depth 0)."""
    depth, quoted, comment = 0, False, False
    buf: list[str] = []
    line, start, begun = 1, 1, False
    for ch in text:
        if ch == "\n":
            comment = False
        if comment:
            continue
        if quoted:
            buf.append(ch)
            if ch == '"':
                quoted = False
            elif ch == "\n":
                raise ValueError(f"line {line}: unterminated string")
            continue
        if ch == "#":
            comment = True
            continue
        if ch == '"':
            quoted = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"line {line}: unbalanced '}}'")
        if depth == 0 and ch in "\n;":
            stmt = "".join(buf).strip()
            if stmt:
                yield start, stmt
            buf, begun = [], False
        else:
            if not begun and not ch.isspace():
                start, begun = line, True
            buf.append(ch)
        if ch == "\n":
            line += 1
    if quoted:
        raise ValueError("unterminated string at end of script")
    if depth:
        raise ValueError("unbalanced '{' at end of script")
    stmt = "".join(buf).strip()
    if stmt:
        yield start, stmt


def check_nft_scope(lines: Iterable[str], *, family: str = "inet", table: str = "cordon") -> None:
    """Refuse an nft script that could touch anything but `table <family> <table>`.

    Allowed top-level statements: `table inet cordon [{...}]`, and `add|create|insert|replace|
    delete|destroy|flush <object> inet cordon ...`. Refused: `flush ruleset`, `include`, `define`,
    any other table or family, a table named without its family. Blocks are inside our table, so
    they cannot name another one.
    """
    text = "\n".join(lines)
    if "\x00" in text:
        raise ValueError("NUL byte in nft script")
    found = False
    for lineno, stmt in _nft_statements(text):
        head = stmt.split("{", 1)[0].split()
        where = f"line {lineno}: {stmt.splitlines()[0][:80]!r}"
        if head and head[0] == "table":
            words = head[1:]
        elif len(head) >= 2 and head[0] in _NFT_VERBS and head[1] in _NFT_OBJECTS:
            words = head[2:]
        else:
            raise ValueError(
                f"{where}: only statements on table {family} {table} are allowed "
                "(table, add, create, insert, replace, delete, destroy, flush)"
            )
        if words[:2] != [family, table]:
            raise ValueError(f"{where}: touches a table other than {family} {table}")
        found = True
    if not found:
        raise ValueError("empty nft script")


def extract_nft_table(text: str, family: str = "inet", name: str = "cordon") -> str | None:
    """The `table <family> <name> { ... }` block of an `nft list ruleset` text, or None."""
    head = re.compile(rf"^table {re.escape(family)} {re.escape(name)} \{{\s*$", re.M)
    m = head.search(text)
    if not m:
        return None
    depth, quoted = 0, False
    for i in range(m.end() - 1, len(text)):
        ch = text[i]
        if quoted:
            quoted = ch != '"'
        elif ch == '"':
            quoted = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[m.start() : i + 1] + "\n"
    raise ValueError(f"table {family} {name} is not closed in the ruleset text")


_COMMENT = re.compile(r'comment "([^"]*)"')
_COUNTER = re.compile(r"counter packets \d+ bytes \d+")


def rule_comments_in(ours: str) -> frozenset[str]:
    """The comments of the rules in the text of our table as read back (`Facts.ours`)."""
    return frozenset(_COMMENT.findall(ours))


def config_lines(text: str) -> list[str]:
    """A ruleset backup's lines apart from our own table (isolation) and the counters' values
    (they change by themselves)."""
    ours = extract_nft_table(text)
    if ours:
        text = text.replace(ours, "")
    return [_COUNTER.sub("counter", ln) for ln in text.splitlines()]
