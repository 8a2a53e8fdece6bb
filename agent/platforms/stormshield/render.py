"""Owns the stormshield renderer: an isolation state as the whole set of Cordon's filter rules of
the appliance's active filter policy (serverd `CONFIG FILTER RULE INSERT` token lines, first in
the policy, before the site's own rules), the host and service objects they name, and the exact
rule comments the read-back expects. Also validates every value that reaches serverd (comments,
interface names) against its syntax. Pure: imports the plan's state types and the error tree.

How the plan's rules become SNS filter rules (SNS filtering is stateful: a `pass` rule is
evaluated on the first packet of a connection and the appliance's state table lets the rest of
the connection, replies included, through without any rule):

    accept            -> action=pass
    drop              -> action=block
    count             -> action=log count=on (a rule that counts and logs the connections it
                         sees and lets evaluation go on: no verdict, like nft's counter; rules
                         see only new connections, so it counts new connections)
    reply accept      -> no rule: the state table of the connection the client opened already
                         passes its replies; a rule from the service's port would let the
                         server side open connections to the client (`NftRule.reply`)

The script is what the driver converges the appliance to: every rule whose comment starts with
`cordon ` is removed from the policy being edited, these are inserted at positions 1..N, then
`CONFIG FILTER ACTIVATE` activates the whole policy as one unit. Object lines come first
(`update=1`: created or left as they are; objects are never removed, a rule may be all that
still names them)."""

from __future__ import annotations

import hashlib
import re

from agent.errors import PlanError
from agent.network.state import DeviceState, NftRule

MARK = "cordon"  # every Cordon rule's comment starts with "cordon "
INSERT = "CONFIG FILTER RULE INSERT"
HEADER = "# cordon: the rules of the active filter policy whose comment starts with 'cordon '"

# serverd splits a command line on blanks and takes key=value tokens, a value with blanks in
# double quotes; nothing documents an escape inside quotes, so a value may hold none of
# `"`, `\`, `=`, control characters or non-ASCII: refused before anything is sent.
_SAFE_TEXT = re.compile(r"^[A-Za-z0-9 _.,:#/@+()-]*$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_COMMENT = 255


def check_text(what: str, value: str) -> str:
    """`value` if serverd takes it as a quoted value unchanged; PlanError naming it if not."""
    if not _SAFE_TEXT.fullmatch(value) or len(value) > MAX_COMMENT:
        raise PlanError(
            f"stormshield: {what} {value!r} cannot be sent to serverd safely",
            hint="letters, digits, blanks and _ . , : # / @ + ( ) - only (no quotes, "
            f"backslash, '=' or control characters), at most {MAX_COMMENT} characters",
        )
    return value


def check_name(what: str, value: str) -> str:
    """`value` if it is a bare serverd token value (an interface or object name)."""
    if not _SAFE_NAME.fullmatch(value):
        raise PlanError(
            f"stormshield: {what} {value!r} is not a valid serverd name",
            hint="letters, digits, '_', '.', '-', starting with a letter or digit, at most 64",
        )
    return value


def quote(value: str) -> str:
    """A token value as serverd reads it: in double quotes when it holds a blank or is empty."""
    return f'"{value}"' if (" " in value or not value) else value


def rule_id(rule: NftRule) -> str:
    """A short stable id of a rule's match and verdict (the same key as the nft renderer's)."""
    return hashlib.sha256(repr(rule.id_key()).encode()).hexdigest()[:8]


def comment(rule: NftRule) -> str:
    tag = check_text("rule tag", rule.tag[:80])
    return f"{MARK} {tag} #{rule_id(rule)}" if tag else f"{MARK} #{rule_id(rule)}"


def counted_as(rule: NftRule) -> str:
    """The comment a counting rule's hits are keyed by (`MONITOR FILTER`)."""
    return comment(rule)


def host_object(address: str) -> str:
    return check_name("host object", f"cordon_h_{address.replace('.', '_')}")


def service_object(port: int) -> str:
    return f"cordon_tcp_{int(port)}"


def sns_rules(state: DeviceState) -> list[NftRule]:
    """The plan's rules that become SNS filter rules, in evaluation order (reply accepts are
    the state table's job: none)."""
    return [r for r in state.ordered_rules() if not r.reply]


def tokens(rule: NftRule) -> list[tuple[str, str]]:
    """The serverd tokens of one Cordon filter rule, in a canonical order (the read-back
    renders what it reads in the same order)."""
    action = {"accept": "pass", "drop": "block", "count": "log"}[rule.verdict]
    out = [("state", "on"), ("action", action)]
    if rule.verdict == "count":
        out.append(("count", "on"))
    if rule.sport is not None or rule.dport is not None:
        out.append(("ipproto", "tcp"))
    if rule.iif:
        out.append(("srcif", check_name("interface", rule.iif)))
    out.append(("srctarget", host_object(rule.saddr) if rule.saddr else "any"))
    if rule.sport is not None:
        out.append(("srcport", service_object(rule.sport)))
    if rule.oif:
        out.append(("dstif", check_name("interface", rule.oif)))
    out.append(("dsttarget", host_object(rule.daddr) if rule.daddr else "any"))
    if rule.dport is not None:
        out.append(("dstport", service_object(rule.dport)))
    out.append(("comment", comment(rule)))
    return out


def line(pairs: list[tuple[str, str]]) -> str:
    return " ".join([INSERT, "type=filter", *(f"{k}={quote(v)}" for k, v in pairs)])


def objects(state: DeviceState) -> list[str]:
    """The object lines the rules need (host and TCP service objects), sorted."""
    hosts = sorted({a for r in sns_rules(state) for a in (r.saddr, r.daddr) if a})
    ports = sorted({p for r in sns_rules(state) for p in (r.sport, r.dport) if p is not None})
    out = [
        f"CONFIG OBJECT HOST NEW name={host_object(a)} ip={a} resolve=static "
        f'comment="{MARK}" update=1'
        for a in hosts
    ]
    out += [
        f"CONFIG OBJECT SERVICE NEW name={service_object(p)} port={p} proto=tcp "
        f'comment="{MARK}" update=1'
        for p in ports
    ]
    if out:
        out.append("CONFIG OBJECT ACTIVATE")
    return out


def script(state: DeviceState) -> str:
    """The whole desired set of Cordon's rules for `state` (none: every Cordon rule removed)."""
    rules = [line(tokens(r)) for r in sns_rules(state)]
    return "\n".join([HEADER, *objects(state), *rules]) + "\n"


def comments(state: DeviceState) -> frozenset[str]:
    """The exact comments of Cordon's rules once the appliance holds `state`."""
    return frozenset(comment(r) for r in sns_rules(state))


_COMMENT = re.compile(r'(?:^|\s)comment=(?:"(?P<q>[^"]*)"|(?P<b>\S+))')


def comments_in(text: str) -> frozenset[str]:
    """The comments of the Cordon rules in `text` (rule lines as the read-back renders them)."""
    out = set()
    for ln in text.splitlines():
        if not ln.startswith(INSERT):
            continue
        m = _COMMENT.search(ln)
        if m is not None:
            found = m.group("q") if m.group("q") is not None else m.group("b")
            if found.startswith(f"{MARK} "):
                out.add(found)
    return frozenset(out)
