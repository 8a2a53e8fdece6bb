"""Owns the fortigate script grammar and read-back: a script's object lines parsed and checked
(only `cordon-` objects, FortiOS-safe names and values: nothing else can reach the device), the
REST objects a device returns rendered as the same lines (`ours`), the FortiOS JSON envelope's
checks, and a backup's own lines. Pure: imports this folder's renderer; raises ValueError."""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.platforms.fortigate.render import (
    COMMENT_MAX,
    HEADER,
    PREFIX,
    LocalIn,
    Policy,
    check_ifname,
    members,
    safe_comment,
)

_NAME = re.compile(rf"^{re.escape(PREFIX)}[a-z0-9][a-z0-9.-]{{0,60}}$")
_REFS = {"srcaddr": "all", "dstaddr": "all", "service": "ALL"}


@dataclass(frozen=True)
class Objects:
    """Cordon's objects as a script or a read-back holds them."""

    addresses: dict[str, str] = field(default_factory=dict)  # name -> a.b.c.d/len
    services: dict[str, int] = field(default_factory=dict)  # name -> tcp port
    policies: list[Policy] = field(default_factory=list)  # in order
    local_in: list[LocalIn] = field(default_factory=list)  # in order

    def lines(self, flags: dict[str, str] | None = None) -> list[str]:
        """The script lines; `flags` (the read-back's placement flags) by `policy <name>` and
        `local-in <name>`."""
        flags = flags or {}
        return [
            *(f"address {n} subnet={s}" for n, s in sorted(self.addresses.items())),
            *(f"service {n} tcp={p}" for n, p in sorted(self.services.items())),
            *(
                p.line(i + 1, flags.get(f"policy {p.name}", ""))
                for i, p in enumerate(self.policies)
            ),
            *(
                p.line(i + 1, flags.get(f"local-in {p.name}", ""))
                for i, p in enumerate(self.local_in)
            ),
        ]

    def text(self, flags: dict[str, str] | None = None) -> str:
        return "\n".join([HEADER, *self.lines(flags)]) + "\n"

    @property
    def empty(self) -> bool:
        return not (self.addresses or self.services or self.policies or self.local_in)


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"object name {name!r} is not a Cordon name (cordon-[a-z0-9.-])")
    return name


def _kv(words: list[str], where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for w in words:
        key, sep, value = w.partition("=")
        if not sep or key in out:
            raise ValueError(f"{where}: expected key=value once each, got {w!r}")
        out[key] = value
    return out


def parse_script(lines: list[str] | tuple[str, ...]) -> Objects:  # noqa: PLR0912 - one grammar
    """The objects of a script (`render.script`), every value checked: a line that is not one of
    ours, a name without the prefix, an interface or comment FortiOS would read otherwise, a
    policy naming an object the script does not define: ValueError naming the line."""
    objs = Objects()
    for no, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"line {no}"
        if "\x00" in line or any(ord(c) < 32 for c in line):
            raise ValueError(f"{where}: control character")
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        kind = words[0] if words else ""
        if kind == "address" and len(words) == 3:
            name = check_name(words[1])
            net = ipaddress.IPv4Network(_kv(words[2:], where).get("subnet", ""), strict=True)
            objs.addresses[name] = str(net)
        elif kind == "service" and len(words) == 3:
            port = int(_kv(words[2:], where).get("tcp", ""))
            if not 1 <= port <= 65535:
                raise ValueError(f"{where}: TCP port {port} out of range")
            objs.services[check_name(words[1])] = port
        elif kind == "policy" and len(words) >= 4:
            if int(words[1]) != len(objs.policies) + 1:
                raise ValueError(f"{where}: policy {words[1]} out of sequence")
            kv = _kv(words[3:], where)
            if set(kv) - {"placement"} != {
                "action",
                "srcintf",
                "dstintf",
                "srcaddr",
                "dstaddr",
                "service",
                "comments",
            }:
                raise ValueError(f"{where}: policy fields {sorted(kv)} are not the expected ones")
            if kv["action"] not in ("accept", "deny"):
                raise ValueError(f"{where}: action {kv['action']!r}")
            for fname in ("srcintf", "dstintf", *_REFS):
                _check_list(kv[fname], fname, where)
            if safe_comment(kv["comments"]) != kv["comments"]:
                raise ValueError(f"{where}: comment has characters FortiOS would not keep")
            objs.policies.append(
                Policy(
                    name=check_name(words[2]),
                    action=kv["action"],
                    srcintf=kv["srcintf"],
                    dstintf=kv["dstintf"],
                    srcaddr=kv["srcaddr"],
                    dstaddr=kv["dstaddr"],
                    service=kv["service"],
                    comments=kv["comments"],
                )
            )
        elif kind == "local-in" and len(words) >= 4:
            objs.local_in.append(_local_in(words, len(objs.local_in) + 1, where))
        else:
            raise ValueError(
                f"{where}: not an address, service, policy or local-in line: {line[:80]!r}"
            )
    every: list[Policy | LocalIn] = [*objs.policies, *objs.local_in]
    for p in every:
        for ref in [*members(p.srcaddr), *members(p.dstaddr)]:
            if ref != "all" and ref not in objs.addresses:
                raise ValueError(f"policy {p.name}: address {ref} is not defined")
        for svc in members(p.service):
            if svc != "ALL" and svc not in objs.services:
                raise ValueError(f"policy {p.name}: service {svc} is not defined")
    if len({p.name for p in objs.policies}) != len(objs.policies):
        raise ValueError("a policy name appears twice")
    if len({p.name for p in objs.local_in}) != len(objs.local_in):
        raise ValueError("a local-in policy name appears twice")
    return objs


def _local_in(words: list[str], seq: int, where: str) -> LocalIn:
    """One `local-in` script line, every value checked (Cordon's local-in policies only deny)."""
    if int(words[1]) != seq:
        raise ValueError(f"{where}: local-in policy {words[1]} out of sequence")
    kv = _kv(words[3:], where)
    want = {"action", "intf", "srcaddr", "dstaddr", "service", "comments"}
    if set(kv) - {"placement"} != want:
        raise ValueError(f"{where}: local-in fields {sorted(kv)} are not the expected ones")
    if kv["action"] != "deny":
        raise ValueError(f"{where}: a Cordon local-in policy only denies, not {kv['action']!r}")
    check_ifname(kv["intf"])
    for ref, builtin in _REFS.items():
        if kv[ref] != builtin:
            check_name(kv[ref])
    name = check_name(words[2])
    if safe_comment(kv["comments"]) != kv["comments"] or (
        len(kv["comments"]) > COMMENT_MAX - len(name) - 1
    ):
        raise ValueError(f"{where}: comment has characters FortiOS would not keep")
    return LocalIn(
        name=name,
        action=kv["action"],
        intf=kv["intf"],
        srcaddr=kv["srcaddr"],
        dstaddr=kv["dstaddr"],
        service=kv["service"],
        comments=kv["comments"],
    )


# -- the REST side ---------------------------------------------------------------------------------


def _check_list(value: str, fname: str, where: str) -> None:
    """A policy field of the script: the built-in 'everything' alone, or distinct names sorted
    (interface names for srcintf/dstintf, Cordon's object names for the others)."""
    names = members(value)
    builtin = {"srcintf": "any", "dstintf": "any", **_REFS}[fname]
    if names == [builtin]:
        return
    if builtin in names or names != sorted(set(names)):
        raise ValueError(
            f"{where}: {fname} {value!r} is not one {builtin!r} or distinct names in sorted order"
        )
    for n in names:
        if fname in ("srcintf", "dstintf"):
            check_ifname(n)
        else:
            check_name(n)


def _list(value: Any, what: str, name: str) -> str:
    """A policy's list field as the script writes it (names sorted, joined by ',')."""
    names = _names(value)
    if not names:
        raise ValueError(f"{name}: {what} is empty")
    return ",".join(sorted(names))


def _names(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of {{'name': ...}}, got {type(value).__name__}")
    return [str(v["name"]) for v in value if isinstance(v, dict) and "name" in v]


def _one(value: Any, what: str, name: str) -> str:
    names = _names(value)
    if len(names) != 1:
        raise ValueError(f"{name}: {what} holds {names}; Cordon's policies name exactly one")
    return names[0]


def subnet_of(value: str) -> str:
    """'198.18.1.10 255.255.255.255' (FortiOS) -> '198.18.1.10/32'."""
    addr, _, mask = value.partition(" ")
    return str(ipaddress.IPv4Network(f"{addr}/{mask or '32'}", strict=False))


def fortios_subnet(cidr: str) -> str:
    """'198.18.1.10/32' -> '198.18.1.10 255.255.255.255' (FortiOS)."""
    net = ipaddress.IPv4Network(cidr)
    return f"{net.network_address} {net.netmask}"


def local_in_name(p: dict[str, Any]) -> str | None:
    """The Cordon name a device's local-in policy carries as the first word of its comments
    (FortiOS gives local-in policies no name), None for the site's own."""
    first = str(p.get("comments", "")).split(" ", 1)[0]
    return first if _NAME.match(first) else None


def ours_from_rest(
    addresses: list[dict[str, Any]],
    services: list[dict[str, Any]],
    policies: list[dict[str, Any]],
    local_in: Sequence[dict[str, Any]] = (),
) -> tuple[Objects, dict[str, str]]:
    """Cordon's objects among a device's (the `results` of the four cmdb tables, policies in
    the device's order) and the placement flags of its policies, by `policy <name>` and
    `local-in <name>`: `after-site-policy` for one that a site policy precedes (Cordon's must
    come first), `disabled` for one not enabled."""
    objs = Objects()
    for a in addresses:
        name = str(a.get("name", ""))
        if name.startswith(PREFIX):
            objs.addresses[name] = subnet_of(str(a.get("subnet", "")))
    for s in services:
        name = str(s.get("name", ""))
        if name.startswith(PREFIX):
            rng = str(s.get("tcp-portrange", ""))
            objs.services[name] = int(rng) if rng.isdigit() else -1
    flags: dict[str, str] = {}
    site_seen = False
    for p in policies:
        name = str(p.get("name", ""))
        if not name.startswith(PREFIX):
            site_seen = True
            continue
        if site_seen:
            flags[f"policy {name}"] = "after-site-policy"
        if p.get("status", "enable") != "enable":
            flags[f"policy {name}"] = "disabled"
        objs.policies.append(
            Policy(
                name=name,
                action=str(p.get("action", "")),
                srcintf=_list(p.get("srcintf"), "srcintf", name),
                dstintf=_list(p.get("dstintf"), "dstintf", name),
                srcaddr=_list(p.get("srcaddr"), "srcaddr", name),
                dstaddr=_list(p.get("dstaddr"), "dstaddr", name),
                service=_list(p.get("service"), "service", name),
                comments=str(p.get("comments", "")),
            )
        )
    site_seen = False
    for p in local_in:
        lname = local_in_name(p)
        if lname is None:
            site_seen = True
            continue
        if site_seen:
            flags[f"local-in {lname}"] = "after-site-policy"
        if p.get("status", "enable") != "enable":
            flags[f"local-in {lname}"] = "disabled"
        objs.local_in.append(
            LocalIn(
                name=lname,
                action=str(p.get("action", "")),
                intf=str(p.get("intf", "")),
                srcaddr=_one(p.get("srcaddr"), "srcaddr", lname),
                dstaddr=_one(p.get("dstaddr"), "dstaddr", lname),
                service=_one(p.get("service"), "service", lname),
                comments=str(p.get("comments", "")).split(" ", 1)[1]
                if " " in str(p.get("comments", ""))
                else "",
            )
        )
    return objs, flags


def local_in_body(p: LocalIn) -> dict[str, Any]:
    """The REST body of one of Cordon's local-in policies (cmdb firewall/local-in-policy,
    FortiOS 7.0/7.2: `intf` is one interface name)."""
    return {
        "intf": p.intf,
        "srcaddr": [{"name": p.srcaddr}],
        "dstaddr": [{"name": p.dstaddr}],
        "service": [{"name": p.service}],
        "action": p.action,
        "schedule": "always",
        "status": "enable",
        "comments": p.device_comments,
    }


def policy_body(p: Policy) -> dict[str, Any]:
    """The REST body of one of Cordon's policies (cmdb firewall/policy; each match field a list
    of `{"name": ...}`, as FortiOS takes them)."""
    return {
        "name": p.name,
        "srcintf": [{"name": n} for n in members(p.srcintf)],
        "dstintf": [{"name": n} for n in members(p.dstintf)],
        "srcaddr": [{"name": n} for n in members(p.srcaddr)],
        "dstaddr": [{"name": n} for n in members(p.dstaddr)],
        "service": [{"name": n} for n in members(p.service)],
        "action": p.action,
        "schedule": "always",
        "status": "enable",
        "logtraffic": "all",
        "comments": p.comments,
    }


def envelope(body: bytes, status: int) -> dict[str, Any]:
    """The FortiOS JSON envelope of an answer; ValueError when it is not one."""
    import json  # noqa: PLC0415 - stdlib, only here

    try:
        data = json.loads(body.decode("utf-8") or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"HTTP {status}: the answer is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"HTTP {status}: the answer is not a JSON object")
    return data


# Settings of `system global` that only Cordon's dead-man changes (revert mode while a change
# is armed): its own safety net, not the site's configuration.
DEADMAN_SETTINGS = ("set cfg-save ", "set cfg-revert-timeout ")


def config_lines(text: str) -> list[str]:
    """A backup's lines apart from Cordon's objects (each `edit ... next` block that names a
    `cordon-` object: isolation changes them), the revert-mode settings the dead-man sets
    (`DEADMAN_SETTINGS`) and the header line that changes by itself."""
    out: list[str] = []
    block: list[str] | None = None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith(("#config-version", "#conf_file_ver", *DEADMAN_SETTINGS)):
            continue
        if block is None and s.startswith("edit "):
            block = [line]
        elif block is not None:
            block.append(line)
        else:
            out.append(line)
        if block is not None and s == "next":
            if not any(f'"{PREFIX}' in b for b in block):
                out += block
            block = None
    return out + (block or [])
