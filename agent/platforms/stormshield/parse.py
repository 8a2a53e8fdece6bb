"""Owns reading what the appliance says back: the filter policy as `CONFIG FILTER EXPLICIT
... output=xml` lists it (`<filters><separator position=../><filter position= index= action=
status= comment=><from><target value= type=/></from><to><port value=/><target value=/></to>
</filter>`), Cordon's rules among them (comment `cordon ...`) rendered back as the renderer's
token lines, each rule read back as the plan's rule it stands for (so an edited rule shows);
the active slot (`CONFIG SLOT LIST`), interfaces, rule hit counters (`MONITOR FILTER`); and a
backup's lines for the baseline digest. Pure: imports the plan's state types, this folder's
renderer (token order, object names) and `serverd.Reply`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from agent.drivers.base import InterfaceState
from agent.network.state import NftRule
from agent.platforms.stormshield import render
from agent.platforms.stormshield.serverd import Reply


@dataclass(frozen=True)
class SnsRule:
    """One filter rule of a policy as EXPLICIT lists it (separators are not rules)."""

    position: int
    index: int
    tokens: tuple[tuple[str, str], ...]

    def get(self, key: str, default: str = "") -> str:
        return next((v for k, v in self.tokens if k == key), default)

    @property
    def comment(self) -> str:
        return self.get("comment")

    @property
    def ours(self) -> bool:
        return self.comment.startswith(f"{render.MARK} ")

    @property
    def line(self) -> str:
        return render.line(list(self.tokens))


_ORDER = (
    "state",
    "action",
    "count",
    "ipproto",
    "srcif",
    "srctarget",
    "srcport",
    "dstif",
    "dsttarget",
    "dstport",
    "comment",
)


def _side(node: ET.Element | None, prefix: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if node is None:
        return out
    targets = [t.attrib.get("value", "") for t in node.findall("target")]
    ports = [p.attrib.get("value", "") for p in node.findall("port")]
    iface = node.find("interface")
    out[f"{prefix}target"] = ",".join(targets) or "any"
    if ports:
        out[f"{prefix}port"] = ",".join(ports)
    if iface is not None:
        out[f"{prefix}if"] = iface.attrib.get("value", "")
    return out


def explicit(element: ET.Element | None) -> list[SnsRule]:
    """The filter rules of `CONFIG FILTER EXPLICIT output=xml`'s data element, in order."""
    if element is None:
        raise ValueError("CONFIG FILTER EXPLICIT answered without xml data")
    filters = element.find("filters") if element.tag != "filters" else element
    if filters is None:
        raise ValueError("CONFIG FILTER EXPLICIT answered without <filters>")
    out = []
    for node in filters.findall("filter"):
        a = node.attrib
        try:
            position, index = int(a["position"]), int(a["index"])
        except (KeyError, ValueError):
            raise ValueError("a <filter> without a numeric position and index") from None
        found = {
            "state": "on" if a.get("status", "active") == "active" else "off",
            "action": a.get("action", ""),
            **({"count": a["count"]} if a.get("count") == "on" else {}),
            **({"ipproto": a["ipproto"]} if a.get("ipproto") else {}),
            **_side(node.find("from"), "src"),
            **_side(node.find("to"), "dst"),
            "comment": a.get("comment", ""),
        }
        ordered = [(k, found[k]) for k in _ORDER if k in found]
        ordered += sorted((k, v) for k, v in found.items() if k not in _ORDER)
        out.append(SnsRule(position, index, tuple(ordered)))
    return out


def ours_text(rules: list[SnsRule]) -> str:
    """Cordon's rules of a policy as the renderer's lines ("" when there is none)."""
    return "".join(r.line + "\n" for r in rules if r.ours)


_HOST = re.compile(r"^cordon_h_(\d+)_(\d+)_(\d+)_(\d+)$")
_PORT = re.compile(r"^cordon_tcp_(\d+)$")


def rule_of(rule: SnsRule) -> NftRule | None:
    """The plan's rule a Cordon rule stands for (tag from its comment), None if it is not one
    Cordon writes (another action, an object or option Cordon never uses)."""
    verdicts = {"pass": "accept", "block": "drop", "log": "count"}
    verdict = verdicts.get(rule.get("action"))
    if verdict is None or (verdict == "count") != (rule.get("count") == "on"):
        return None
    if rule.get("state") != "on":
        return None

    def host(value: str) -> str | bool | None:
        if value == "any":
            return None
        m = _HOST.match(value)
        return ".".join(m.groups()) if m else False

    def port(value: str) -> int | bool | None:
        if not value:
            return None
        m = _PORT.match(value)
        return int(m.group(1)) if m else False

    saddr, daddr = host(rule.get("srctarget")), host(rule.get("dsttarget"))
    sport, dport = port(rule.get("srcport")), port(rule.get("dstport"))
    if False in (saddr, daddr, sport, dport):
        return None
    tag = rule.comment[len(render.MARK) + 1 :].rsplit(" #", 1)[0]
    if tag.startswith("#"):
        tag = ""
    return NftRule(
        verdict,  # type: ignore[arg-type]
        rule.get("srcif") or None,
        rule.get("dstif") or None,
        saddr or None,  # type: ignore[arg-type]
        daddr or None,  # type: ignore[arg-type]
        sport if isinstance(sport, int) and not isinstance(sport, bool) else None,
        dport if isinstance(dport, int) and not isinstance(dport, bool) else None,
        tag,
    )


def edited(rule: SnsRule) -> bool:
    """Is this Cordon rule not what Cordon wrote for its comment (edited on the appliance)?"""
    plan = rule_of(rule)
    if plan is None:
        return True
    try:
        return render.line(render.tokens(plan)) != rule.line
    except Exception:  # a tag the renderer refuses: not Cordon's
        return True


def active_slot(r: Reply) -> str:
    """The active filter slot number of `CONFIG SLOT LIST type=filter` ([Global] active=NN)."""
    value = (r.sections.get("Global") or {}).get("active", "")
    if not re.fullmatch(r"\d{1,2}", value):
        raise ValueError(f"CONFIG SLOT LIST gives no active filter slot ({value!r})")
    return value


def interfaces(r: Reply) -> tuple[InterfaceState, ...]:
    """Interfaces of `CONFIG NETWORK INTERFACE SHOW` (section_line: name= state=0|1 link=)."""
    out = []
    for row in r.lines.get("Result", []):
        name = row.get("name")
        if not name or row.get("state") not in ("0", "1"):
            raise ValueError(f"an interface line without name and state: {row!r}")
        link = row.get("link")
        out.append(
            InterfaceState(
                name=name,
                admin_up=row["state"] == "1",
                oper_up=None if link is None else link == "up",
            )
        )
    return tuple(out)


def hits(r: Reply) -> dict[str, int]:
    """Hits of each commented rule of `MONITOR FILTER` (section_line: comment= hits=), keyed
    by comment; rules sharing a comment are summed."""
    out: dict[str, int] = {}
    for row in r.lines.get("Result", []):
        comment, count = row.get("comment", ""), row.get("hits", "")
        if not comment:
            continue
        if not count.isdigit():
            raise ValueError(f"a rule counter that is not a count: {row!r}")
        out[comment] = out.get(comment, 0) + int(count)
    return out


def config_lines(text: str) -> list[str]:
    """A backup's lines apart from Cordon's rules (the isolation) and its date lines."""
    return [
        ln
        for ln in text.splitlines()
        if f'comment="{render.MARK} ' not in ln and not ln.lower().startswith(("date=", "#"))
    ]
