"""Owns the aruba_aoscx translations between Cordon's CLI-syntax change sets and the AOS-CX REST
objects (ACL entries `cfg_aces`, interfaces' `admin_state` and `aclv4_routed_{in,out}_cfg`), the
read-back of those objects (interfaces, Cordon's ACLs as text, their comments and hit counts) and a
running-config backup's own lines. Pure: imports the driver contract's types and this folder's
renderer; raises ValueError on input it cannot read (the driver turns it into a DeviceError)."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.drivers.base import InterfaceState
from agent.platforms.aruba_aoscx.render import HEADER, PREFIX

API = "/rest/v10.09"
LIST_TYPE = "ipv4"
HOST_MASK = "255.255.255.255"
_ACL_NAME = re.compile(r"^CORDON-(?:IN|OUT)-[A-Za-z0-9_.-]{1,48}$")
_SEQ = re.compile(r"^\s+(?P<seq>[0-9]{1,7}) (?P<rest>.+)$")
_APPLY = re.compile(r"^\s+apply access-list ip (?P<acl>\S+) (?P<dir>routed-in|routed-out)$")


def acl_key(name: str) -> str:
    """The REST key of an IPv4 ACL: `<name>,ipv4` (path `/system/acls/<name>,ipv4`)."""
    return f"{name},{LIST_TYPE}"


def acl_uri(name: str) -> str:
    return f"{API}/system/acls/{acl_key(name)}"


def if_path(name: str) -> str:
    """`/system/interfaces/1%2F1%2F1`: the interface name percent-encoded as one path segment."""
    return "/system/interfaces/" + name.replace("%", "%25").replace("/", "%2F").replace(":", "%3A")


# --------------------------------------------------------------------- ACE text <-> REST fields


def ace_fields(text: str, comment: str | None = None) -> dict[str, Any]:
    """The REST `cfg_aces` entry of one ACE in the renderer's CLI words
    (`permit tcp 198.18.1.10 eq 443 any established count`)."""
    words = text.split()
    if len(words) < 4 or words[0] not in ("permit", "deny") or words[1] not in ("tcp", "any"):
        raise ValueError(f"ACE {text!r}: expected '<permit|deny> <tcp|any> SRC [eq P] DST ...'")
    out: dict[str, Any] = {"action": words[0]}
    if words[1] == "tcp":
        out["protocol"] = 6
    rest = words[2:]
    for side in ("src", "dst"):
        if not rest:
            raise ValueError(f"ACE {text!r}: no {side} address")
        addr, rest = rest[0], rest[1:]
        if addr != "any":
            ipaddress.IPv4Address(addr)  # ValueError names the address
            out[f"{side}_ip"] = f"{addr}/{HOST_MASK}"
        if rest[:1] == ["eq"]:
            if len(rest) < 2 or not rest[1].isdigit() or not 0 < int(rest[1]) < 65536:
                raise ValueError(f"ACE {text!r}: 'eq' needs a port 1-65535")
            out[f"{side}_l4_port_min"] = out[f"{side}_l4_port_max"] = int(rest[1])
            rest = rest[2:]
    for word in rest:
        if word == "established" and words[1] == "tcp":
            out["tcp_established"] = True
        elif word == "count":
            out["count"] = True
        else:
            raise ValueError(f"ACE {text!r}: unexpected {word!r}")
    if comment is not None:
        out["comment"] = comment
    return out


def _ip(value: Any) -> str:
    if value is None:
        return "any"
    addr, _, mask = str(value).partition("/")
    if mask not in ("", HOST_MASK, "32"):
        net = ipaddress.IPv4Network(f"{addr}/{mask}", strict=False)
        return str(net)
    return addr


def ace_words(fields: Mapping[str, Any]) -> str:
    """The CLI words of a REST ACE (the inverse of `ace_fields`; any address with its mask)."""
    words = [str(fields.get("action", "?")), "tcp" if fields.get("protocol") == 6 else "any"]
    for side in ("src", "dst"):
        words.append(_ip(fields.get(f"{side}_ip")))
        low, high = fields.get(f"{side}_l4_port_min"), fields.get(f"{side}_l4_port_max")
        if low is not None:
            words += ["eq", str(low)] if low == high else ["range", str(low), str(high)]
    if fields.get("tcp_established"):
        words.append("established")
    if fields.get("count"):
        words.append("count")
    return " ".join(words)


# --------------------------------------------------------------------- a script, as objects


@dataclass
class Desired:
    """Cordon's objects as a script says: ACL name -> {seq: ACE fields}; and per interface,
    its routed-in / routed-out ACL name."""

    acls: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    applied: dict[str, dict[str, str]] = field(default_factory=dict)


def parse_script(lines: Iterable[str]) -> Desired:  # noqa: PLR0912 - one line scanner
    """Read the renderer's script (`access-list ip CORDON-...` blocks, then `interface X` /
    `apply access-list ip ... routed-in|routed-out`). Any other line is refused: the driver
    sends nothing it does not understand."""
    out = Desired()
    acl: str | None = None
    iface: str | None = None
    comments: dict[str, str] = {}
    for n, raw in enumerate(lines, start=1):
        line = raw.rstrip()
        if not line.strip() or line == HEADER:
            continue
        if any(not ch.isprintable() for ch in line):
            raise ValueError(f"line {n}: control characters")
        if line.startswith("access-list ip "):
            name = line.split()[2] if len(line.split()) == 3 else ""
            if not _ACL_NAME.match(name):
                raise ValueError(f"line {n}: {line!r}: Cordon writes only ACLs named CORDON-...")
            acl, iface, comments = name, None, {}
            out.acls[name] = {}
            continue
        if line.startswith("interface "):
            iface, acl = line.split(None, 1)[1].strip(), None
            continue
        m = _SEQ.match(line)
        if m and acl is not None:
            seq, rest = m.group("seq"), m.group("rest")
            if rest.startswith("comment "):
                comments[seq] = rest[len("comment ") :]
            else:
                out.acls[acl][seq] = ace_fields(rest, comments.get(seq))
            continue
        a = _APPLY.match(line)
        if a and iface is not None:
            if not _ACL_NAME.match(a.group("acl")):
                raise ValueError(f"line {n}: {line!r}: not a Cordon ACL")
            way = "in" if a.group("dir") == "routed-in" else "out"
            out.applied.setdefault(iface, {})[way] = a.group("acl")
            continue
        raise ValueError(f"line {n}: {line!r} is not part of a Cordon ACL script")
    for applied in out.applied.values():
        for name in applied.values():
            if name not in out.acls:
                raise ValueError(f"ACL {name} is applied but not defined in the script")
    return out


def parse_shutdown(lines: Iterable[str]) -> dict[str, bool]:
    """`interface X` / `shutdown|no shutdown` pairs -> {X: admin up}."""
    out: dict[str, bool] = {}
    iface: str | None = None
    for n, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("interface ") and len(line.split()) == 2:
            iface = line.split()[1]
        elif line in ("shutdown", "no shutdown") and iface is not None:
            out[iface] = line == "no shutdown"
        else:
            raise ValueError(f"line {n}: {line!r}: expected 'interface X' then '[no] shutdown'")
    return out


def is_acl_script(lines: Iterable[str]) -> bool:
    """A whole-set ACL script (the renderer's header first), not shutdown lines."""
    first = next((ln for ln in lines if ln.strip()), "")
    return first == HEADER


# --------------------------------------------------------------------- read-back


def ref_name(ref: Any) -> str | None:
    """The ACL name of an interface's `aclv4_routed_*_cfg` (a {key: uri} object, a URI, None)."""
    if not ref:
        return None
    key = next(iter(ref)) if isinstance(ref, dict) else str(ref).rsplit("/", 1)[-1]
    return str(key).rsplit(",", 1)[0]


def parse_interfaces(data: Any) -> tuple[InterfaceState, ...]:
    """Interfaces from `GET /system/interfaces?depth=2&attributes=...` (a name -> object map)."""
    if not isinstance(data, dict):
        raise ValueError("the interfaces answer is not a JSON object")
    out = []
    for name, obj in sorted(data.items()):
        if not isinstance(obj, dict) or obj.get("admin_state") not in ("up", "down"):
            raise ValueError(f"interface {name}: no admin_state up/down")
        link = obj.get("link_state")
        out.append(
            InterfaceState(
                name=str(name),
                admin_up=obj["admin_state"] == "up",
                oper_up=None if link is None else link == "up",
            )
        )
    return tuple(out)


def ours_text(acls: Mapping[str, Any], interfaces: Mapping[str, Any]) -> str:
    """Cordon's objects read back from the switch, in the renderer's syntax (sorted: the same
    text as the script for the same objects)."""
    lines: list[str] = [HEADER]
    for name in sorted(acls):
        if not name.startswith(PREFIX):
            continue
        lines.append(f"access-list ip {name}")
        aces = acls[name].get("cfg_aces") or {}
        for seq in sorted(aces, key=int):
            ace = aces[seq]
            if ace.get("comment") is not None:
                lines.append(f"    {seq} comment {ace['comment']}")
            lines.append(f"    {seq} {ace_words(ace)}")
    for iface in sorted(interfaces):
        obj = interfaces[iface] or {}
        applies = []
        for attr, routed in (
            ("aclv4_routed_in_cfg", "routed-in"),
            ("aclv4_routed_out_cfg", "routed-out"),
        ):
            ref = ref_name(obj.get(attr))
            if ref is not None and ref.startswith(PREFIX):
                applies.append(f"    apply access-list ip {ref} {routed}")
        if applies:
            lines += [f"interface {iface}", *applies]
    if len(lines) == 1:
        return ""
    return "\n".join(lines) + "\n"


def comments_in(ours: str) -> frozenset[str]:
    """The ACE comments in the text of Cordon's ACLs as read back (`Facts.ours`)."""
    return frozenset(m.group(1) for m in re.finditer(r"^\s+[0-9]+ comment (.*)$", ours, re.M))


def ace_comments(acls: Mapping[str, Any]) -> tuple[str, ...]:
    """The comment of every entry of Cordon's ACLs, in order ("" for none; duplicates kept)."""
    out: list[str] = []
    for name in sorted(acls):
        if name.startswith(PREFIX):
            aces = acls[name].get("cfg_aces") or {}
            out += [str(aces[s].get("comment") or "") for s in sorted(aces, key=int)]
    return tuple(out)


def hit_counts(statistics: Mapping[str, Any], acls: Mapping[str, Any]) -> dict[str, int]:
    """Packets matched per ACE comment, from the ACLs' per-entry `statistics` maps
    ({acl name: {seq: packets}}); entries sharing a comment are summed."""
    out: dict[str, int] = {}
    for name, by_seq in statistics.items():
        aces = (acls.get(name) or {}).get("cfg_aces") or {}
        for seq, packets in (by_seq or {}).items():
            note = (aces.get(str(seq)) or {}).get("comment")
            if note:
                out[note] = out.get(note, 0) + int(packets)
    return out


_VOLATILE_KEYS = ("aclv4_routed_in_cfg", "aclv4_routed_out_cfg", "admin_state")


def config_lines(text: str) -> list[str]:
    """A running-config backup's lines apart from what isolation changes (Cordon's ACLs, their
    application, admin states): the baseline digest compares them."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text.splitlines()
    if isinstance(data, dict):
        acls = data.get("ACL") or {}
        if isinstance(acls, dict):
            data["ACL"] = {k: v for k, v in acls.items() if not str(k).startswith(PREFIX)}
        ifaces = data.get("Interface") or {}
        if isinstance(ifaces, dict):
            for obj in ifaces.values():
                if isinstance(obj, dict):
                    for key in _VOLATILE_KEYS:
                        obj.pop(key, None)
    return json.dumps(data, indent=1, sort_keys=True).splitlines()
