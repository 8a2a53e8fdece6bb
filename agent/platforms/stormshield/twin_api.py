"""Owns the stormshield twin device's management API: an HTTPS server (`python -m` in the
device's namespace, started by `twin.py`) that speaks the SNS "SSL API" as the official client
`stormshield.sns.sslclient` speaks it (`/auth/admin.html`, `/api/auth/login`, `/api/command`,
`/api/download/tmp.file`, `/api/auth/logout`; answers in `<nws>`/`<serverd>` XML, shapes kept
in `fixtures/`), for the serverd subset Cordon uses, and whose effects are real: the active
filter slot's rules (ordered, first match on a connection's first packet, an implicit block at
the end, replies of a passed connection by connection tracking) become this namespace's own
nftables table `inet sns_filter`, built here from ITS rules (never by Cordon's renderer); an
interface disabled takes the kernel link down; `MONITOR CONNECTION` lists the namespace's
conntrack entries and `MONITOR FLUSH STATE <ip>` deletes the host's (`conntrack`, from
conntrack-tools), so its open connections meet the rules again at their next packet (the kernel
picks a connection up mid-stream). It refuses what serverd
refuses in the subset: bad credentials, an unknown command, a malformed or unknown-object rule,
a bad session, a flush of anything but one host address.

Edits follow serverd's clone: `CONFIG FILTER RULE INSERT/REMOVE` change a copy of the slot,
`CONFIG FILTER ACTIVATE` saves it and reloads the active slot; `EXPLICIT useclone=1` shows the
copy being edited. Imports the standard library only (it runs alone in the namespace)."""

from __future__ import annotations

import base64
import copy
import hmac
import html
import ipaddress
import json
import secrets
import shlex
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TABLE = "sns_filter"
OK = '<serverd ret="100" code="00a00100" msg="Ok"></serverd>'
BEGIN = '<serverd ret="101" code="00a01000" msg="Begin">'
# serverd's error line for malformed arguments ("200 code=00100800 msg=\"Error in format\"",
# as public NSRPC clients quote it) and, by the same shape, for an unknown command
ERR_FORMAT = '<serverd ret="200" code="00100800" msg="Error in format"></serverd>'
ERR_UNKNOWN = '<serverd ret="200" code="00100100" msg="Unknown command"></serverd>'
RULE_TOKENS = {
    "index", "type", "global", "position", "output", "state", "action", "count", "ipproto",
    "srctarget", "srcport", "srcportop", "srcif", "dsttarget", "dstport", "dstportop", "dstif",
    "comment", "rulename", "loglevel", "inspection",
}  # fmt: skip
ACTIONS = {"pass", "block", "reset", "log"}


class Refused(Exception):
    def __init__(self, part: str) -> None:
        super().__init__(part)
        self.part = part


def _xml(*parts: str, code: int = 100, msg: str = "OK") -> bytes:
    return (f'<?xml version="1.0"?>\n<nws code="{code}" msg="{msg}">' + "".join(parts)).encode() + (
        b"</nws>"
    )


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def _section_line(title: str, rows: list[dict[str, str]]) -> str:
    body = "".join(
        "<line>"
        + "".join(f'<key name="{_attr(k)}" value="{_attr(v)}"/>' for k, v in row.items())
        + "</line>"
        for row in rows
    )
    return f'{BEGIN}<data format="section_line"><section title="{title}">{body}</section></data>'


def _sections(sections: dict[str, dict[str, str]]) -> str:
    body = "".join(
        f'<section title="{_attr(t)}">'
        + "".join(f'<key name="{_attr(k)}" value="{_attr(v)}"/>' for k, v in keys.items())
        + "</section>"
        for t, keys in sections.items()
    )
    return f'{BEGIN}<data format="section">{body}</data>'


def tokenize(line: str) -> tuple[list[str], dict[str, str]]:
    """Words and key=value tokens of a serverd command line (values in double quotes may hold
    blanks); Refused on a broken quote or a repeated key."""
    lex = shlex.shlex(line, posix=True)
    lex.whitespace_split = True
    lex.quotes = '"'
    lex.escape = ""
    lex.commenters = ""
    try:
        words = list(lex)
    except ValueError:
        raise Refused(ERR_FORMAT) from None
    verb: list[str] = []
    args: dict[str, str] = {}
    for w in words:
        if "=" in w:
            k, v = w.split("=", 1)
            if not k or k.lower() in args:
                raise Refused(ERR_FORMAT)
            args[k.lower()] = v
        elif args:
            verb.append(w)  # a bare word after the arguments (ACTIVATE CANCEL, ...)
        else:
            verb.append(w.upper())
    return verb, args


@dataclass
class Device:
    """The appliance's configuration and the kernel state built from it."""

    name: str
    interfaces: dict[str, dict[str, Any]]  # inventory name -> {kernel, state}
    slots: dict[str, dict[str, Any]]  # "05" -> {name, lines: [{kind, ...}]}
    active: str
    hosts: dict[str, dict[str, str]] = field(default_factory=dict)
    services: dict[str, dict[str, str]] = field(default_factory=dict)
    clone: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    pending_if: dict[str, str] = field(default_factory=dict)
    download: bytes = b""
    next_index: int = 1000
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- filter -------------------------------------------------------------------------------

    def edited(self, slot: str) -> list[dict[str, Any]]:
        if slot not in self.slots:
            raise Refused(ERR_FORMAT)
        if slot not in self.clone:
            self.clone[slot] = copy.deepcopy(self.slots[slot]["lines"])
        return self.clone[slot]

    def check_object(self, value: str, kind: str) -> None:
        if value == "any":
            return
        table = self.hosts if kind == "host" else self.services
        for name in value.split(","):
            if name not in table:
                raise Refused(ERR_FORMAT)

    def insert(self, args: dict[str, str]) -> None:
        for k in args:
            if k not in RULE_TOKENS:
                raise Refused(ERR_FORMAT)
        needed = ("index", "type", "state", "action", "srctarget", "dsttarget")
        if any(k not in args for k in needed) or args["type"] != "filter":
            raise Refused(ERR_FORMAT)
        if args["action"] not in ACTIONS or args["state"] not in ("on", "off"):
            raise Refused(ERR_FORMAT)
        if args.get("count", "off") not in ("on", "off"):
            raise Refused(ERR_FORMAT)
        if args.get("ipproto", "tcp") not in ("tcp", "any"):
            raise Refused(ERR_FORMAT)
        for side in ("src", "dst"):
            self.check_object(args[f"{side}target"], "host")
            if f"{side}port" in args:
                self.check_object(args[f"{side}port"], "service")
            iface = args.get(f"{side}if")
            if iface is not None and iface != "any" and iface not in self.interfaces:
                raise Refused(ERR_FORMAT)
        lines = self.edited(args["index"].zfill(2))
        pos = args.get("position")
        at = len(lines) if pos is None else int(pos) - 1 if pos.isdigit() else -1
        if not 0 <= at <= len(lines):
            raise Refused(ERR_FORMAT)
        self.next_index += 1
        rule = {k: v for k, v in args.items() if k not in ("index", "type", "position", "global")}
        lines.insert(at, {"kind": "filter", "index": self.next_index, **rule})

    def remove(self, args: dict[str, str]) -> None:
        if any(k not in args for k in ("index", "type", "position")):
            raise Refused(ERR_FORMAT)
        lines = self.edited(args["index"].zfill(2))
        if args["position"] == "all":
            lines[:] = [ln for ln in lines if ln["kind"] != "filter"]
            return
        pos = int(args["position"]) if args["position"].isdigit() else 0
        if not 1 <= pos <= len(lines) or lines[pos - 1]["kind"] != "filter":
            raise Refused(ERR_FORMAT)
        del lines[pos - 1]

    def activate(self) -> None:
        for slot, lines in self.clone.items():
            self.slots[slot]["lines"] = lines
        self.clone = {}
        self.load()

    # -- kernel -------------------------------------------------------------------------------

    def _host(self, value: str) -> str | None:
        if value == "any":
            return None
        ips = [self.hosts[n]["ip"] for n in value.split(",")]
        return ips[0] if len(ips) == 1 else "{ " + ", ".join(ips) + " }"

    def _port(self, value: str | None) -> str | None:
        if value is None or value == "any":
            return None
        ports = [self.services[n]["port"] for n in value.split(",")]
        return ports[0] if len(ports) == 1 else "{ " + ", ".join(ports) + " }"

    def nft_rule(self, rule: dict[str, Any]) -> str:
        parts = []
        for side, key in (("iifname", "srcif"), ("oifname", "dstif")):
            if rule.get(key, "any") != "any":
                parts.append(f'{side} "{self.interfaces[rule[key]]["kernel"]}"')
        for side, key in (("saddr", "srctarget"), ("daddr", "dsttarget")):
            addr = self._host(rule[key])
            if addr is not None:
                parts.append(f"ip {side} {addr}")
        sport, dport = self._port(rule.get("srcport")), self._port(rule.get("dstport"))
        if sport or dport or rule.get("ipproto") == "tcp":
            parts.append("meta l4proto tcp")
        if sport:
            parts.append(f"tcp sport {sport}")
        if dport:
            parts.append(f"tcp dport {dport}")
        verdict = {"pass": "accept", "block": "drop", "log": "", "reset": "reject"}
        parts += ["counter", verdict[rule["action"]]]
        parts.append(f'comment "sns rule {rule["index"]}"')
        return " ".join(p for p in parts if p)

    def ruleset(self) -> str:
        rules = [
            self.nft_rule(ln)
            for ln in self.slots[self.active]["lines"]
            if ln["kind"] == "filter" and ln.get("state") == "on"
        ]
        body = "\n".join(f"    {r}" for r in rules)
        return (
            f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n"
            f"table inet {TABLE} {{\n  chain forward {{\n"
            "    type filter hook forward priority 0; policy drop;\n"
            "    ct state established,related accept\n    ct state invalid drop\n"
            f"{body}\n"
            '    counter comment "sns implicit block"\n  }\n}\n'
        )

    def load(self) -> None:
        done = subprocess.run(
            ["nft", "-f", "-"], input=self.ruleset(), text=True, capture_output=True, check=False
        )
        if done.returncode != 0:
            log(f"nft refused the active slot: {done.stderr.strip()}")
            raise Refused(ERR_FORMAT)

    def counters(self) -> dict[int, int]:
        done = subprocess.run(
            ["nft", "-j", "list", "table", "inet", TABLE],
            capture_output=True,
            text=True,
            check=False,
        )
        out: dict[int, int] = {}
        if done.returncode != 0:
            return out
        for item in json.loads(done.stdout).get("nftables", []):
            rule = item.get("rule")
            if not rule or not str(rule.get("comment", "")).startswith("sns rule "):
                continue
            for stmt in rule.get("expr", []):
                if isinstance(stmt, dict) and "counter" in stmt:
                    out[int(rule["comment"].split()[-1])] = int(stmt["counter"]["packets"])
        return out

    def link(self, name: str, up: bool) -> None:
        """Take the kernel link down (its routes go with it, kept to be put back) or up again
        with the routes it had, as the appliance's network activation does."""
        kernel = self.interfaces[name]["kernel"]
        iface = self.interfaces[name]
        if not up and iface["state"] == "1":
            done = subprocess.run(
                ["ip", "-j", "route", "show", "dev", kernel],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            iface["routes"] = [r for r in json.loads(done.stdout or "[]") if r.get("gateway")]
        subprocess.run(["ip", "link", "set", kernel, "up" if up else "down"], check=True)
        if up:
            for r in iface.pop("routes", []):
                subprocess.run(
                    ["ip", "route", "replace", r["dst"], "via", r["gateway"], "dev", kernel],
                    check=False,
                )
        iface["state"] = "1" if up else "0"

    def links_oper(self) -> dict[str, str]:
        """Every interface's link state (`up` with carrier, else `down`), from one `ip link`
        listing of the namespace (one process, not one per interface: the emulator's cost, not
        the appliance's)."""
        done = subprocess.run(
            ["ip", "-o", "link", "show"], capture_output=True, text=True, check=False
        )
        flags: dict[str, str] = {}
        for line in done.stdout.splitlines():
            parts = line.split(":", 2)
            if len(parts) == 3:
                flags[parts[1].strip().split("@", 1)[0]] = parts[2]
        out = {}
        for name, iface in self.interfaces.items():
            got = flags.get(iface["kernel"], "")
            out[name] = "up" if "LOWER_UP" in got and ",UP" in got else "down"
        return out

    # -- answers ------------------------------------------------------------------------------

    def explicit(self, args: dict[str, str]) -> str:
        if args.get("type") != "filter" or "index" not in args:
            raise Refused(ERR_FORMAT)
        slot = args["index"].zfill(2)
        if slot not in self.slots:
            raise Refused(ERR_FORMAT)
        use_clone = args.get("useclone") == "1" and slot in self.clone
        lines = self.clone[slot] if use_clone else self.slots[slot]["lines"]
        out = []
        for pos, ln in enumerate(lines, 1):
            if ln["kind"] == "separator":
                out.append(
                    f'<separator position="{pos}" color="c0c0c0" '
                    f'comment="{_attr(ln.get("comment", ""))}" collapse="0" />'
                )
                continue
            status = "active" if ln["state"] == "on" else "inactive"
            attrs = (
                f'position="{pos}" index="{ln["index"]}" type="local_filter_slot" '
                f'action="{ln["action"]}" status="{status}"'
            )
            if ln.get("count") == "on":
                attrs += ' count="on"'
            if ln.get("ipproto"):
                attrs += f' ipproto="{ln["ipproto"]}"'
            attrs += f' comment="{_attr(ln.get("comment", ""))}"'
            sides = []
            for side, tag in (("src", "from"), ("dst", "to")):
                inner = ""
                if ln.get(f"{side}if", "any") != "any":
                    inner += f'<interface value="{ln[f"{side}if"]}" />'
                if f"{side}port" in ln:
                    inner += "".join(
                        f'<port value="{p}" type="single" />' for p in ln[f"{side}port"].split(",")
                    )
                target = ln[f"{side}target"]
                kind = "any" if target == "any" else "host"
                inner += "".join(f'<target value="{t}" type="{kind}" />' for t in target.split(","))
                sides.append(f"<{tag}>{inner}</{tag}>")
            out.append(
                f'<filter {attrs}><noconnlog disk="0" syslog="0" ipfix="0" />{"".join(sides)}'
                "</filter>"
            )
        data = f'<filters total_lines="{len(lines)}">\n' + "\n".join(out) + "\n</filters>"
        if args.get("output") == "xml":
            return f'{BEGIN}<data format="xml">{data}</data></serverd>{OK}'
        raise Refused(ERR_FORMAT)  # the plain output is not emulated

    def backup_text(self) -> str:
        out = [f"# SNS configuration backup of {self.name} (twin, plain text): list=all"]
        out.append(f"[Filter] active={self.active}")
        for slot, s in sorted(self.slots.items()):
            out.append(f'[Filter/{slot}] name="{s["name"]}"')
            for ln in s["lines"]:
                out.append(" ".join(f'{k}="{v}"' for k, v in ln.items() if k != "index"))
        for name, h in sorted(self.hosts.items()):
            out.append(f'[Object/Host] name={name} ip={h["ip"]} comment="{h.get("comment", "")}"')
        for name, s in sorted(self.services.items()):
            out.append(
                f"[Object/Service] name={name} port={s['port']} proto={s['proto']} "
                f'comment="{s.get("comment", "")}"'
            )
        for name, i in sorted(self.interfaces.items()):
            out.append(f"[Network/Interface] name={name} state={i['state']}")
        return "\n".join(out) + "\n"

    def run(self, line: str) -> str:  # noqa: PLR0911, PLR0912 (one branch per command)
        verb, args = tokenize(line)
        cmd = " ".join(verb)
        if cmd == "CONFIG SLOT LIST" and args.get("type") == "filter":
            sections = {"Global": {"active": self.active, "sync": "1"}}
            for slot, s in sorted(self.slots.items()):
                sections[slot] = {"name": s["name"], "lastmod": "2025-01-06 08:00:00"}
            return _sections(sections) + "</serverd>" + OK
        if cmd == "CONFIG SLOT ACTIVATE" and args.get("type") == "filter":
            slot = args.get("slot", "").zfill(2)
            if slot not in self.slots:
                raise Refused(ERR_FORMAT)
            self.active = slot
            self.load()
            return OK
        if cmd == "CONFIG FILTER EXPLICIT":
            return self.explicit(args)
        if cmd == "CONFIG FILTER RULE INSERT":
            self.insert(args)
            return OK
        if cmd == "CONFIG FILTER RULE REMOVE":
            self.remove(args)
            return OK
        if cmd == "CONFIG FILTER ACTIVATE":
            self.activate()
            return OK
        if cmd in ("CONFIG OBJECT HOST NEW", "CONFIG OBJECT SERVICE NEW"):
            return self.new_object(cmd, args)
        if cmd == "CONFIG OBJECT ACTIVATE":
            return OK
        if cmd == "CONFIG NETWORK INTERFACE SHOW":
            links = self.links_oper()
            rows = [
                {"name": n, "state": i["state"], "link": links[n]}
                for n, i in sorted(self.interfaces.items())
            ]
            return _section_line("Result", rows) + "</serverd>" + OK
        if cmd == "CONFIG NETWORK INTERFACE UPDATE":
            name, state = args.get("ifname", ""), args.get("state", "")
            if name not in self.interfaces or state not in ("0", "1"):
                raise Refused(ERR_FORMAT)
            self.pending_if[name] = state
            return OK
        if cmd == "CONFIG NETWORK ACTIVATE":
            for name, state in self.pending_if.items():
                self.link(name, state == "1")
            self.pending_if = {}
            return OK
        if cmd == "MONITOR CONNECTION":
            return self.connections(args)
        if verb[:3] == ["MONITOR", "FLUSH", "STATE"]:
            return self.flush_state(verb[3:], args)
        if cmd == "MONITOR FILTER":
            hits = self.counters()
            rows = [
                {
                    "index": str(ln["index"]),
                    "position": str(pos),
                    "action": ln["action"],
                    "hits": str(hits.get(ln["index"], 0)),
                    "comment": ln.get("comment", ""),
                }
                for pos, ln in enumerate(self.slots[self.active]["lines"], 1)
                if ln["kind"] == "filter" and ln.get("state") == "on"
            ]
            return _section_line("Result", rows) + "</serverd>" + OK
        if cmd == "CONFIG BACKUP" and args.get("list") == "all":
            self.download = self.backup_text().encode()
            crc = f"{zlib.crc32(self.download) ^ 0xFFFFFFFF:X}"
            value = f"base64,crc={crc},size={len(self.download)}"
            return (
                '<serverd ret="101" code="00a01c00" msg="Waiting for data">'
                '<data format="section"><section title="Result">'
                f'<key name="format" value="{value}"/></section></data></serverd>'
            )
        raise Refused(ERR_UNKNOWN)

    def flush_state(self, words: list[str], args: dict[str, str]) -> str:
        """`MONITOR FLUSH STATE <ip> [rtstate=UP|DEGRADED|DOWN]`: the host's connection states
        go (this namespace's conntrack entries from or to it); the next packet of one of its
        connections is then a first packet again and meets the active policy's rules. One host
        address and nothing else, or the format error."""
        if len(words) != 1 or any(k != "rtstate" for k in args):
            raise Refused(ERR_FORMAT)
        if args.get("rtstate", "UP") not in ("UP", "DEGRADED", "DOWN"):
            raise Refused(ERR_FORMAT)
        try:
            host = ipaddress.IPv4Address(words[0])
        except ValueError:
            raise Refused(ERR_FORMAT) from None
        if host.is_multicast or host.is_unspecified:
            raise Refused(ERR_FORMAT)
        sides = conntrack_sides(str(host))
        for side, n in sides.items():
            if n:  # a process only for a side that has entries (exit 1 when none are left)
                subprocess.run(
                    ["conntrack", "-D", side, str(host)], capture_output=True, check=False
                )
        log(f"flushed {sum(sides.values())} connection state(s) of {host}")
        return OK

    def connections(self, args: dict[str, str]) -> str:
        """`MONITOR CONNECTION [host=<ip>] [state=all] [maxcount=<n>]`: one section_line row per
        connection state of this namespace (its conntrack table, original direction: `proto`,
        `src`, `srcport`, `dst`, `dstport`, `state`), at most `maxcount`. The other documented
        filters are not emulated (the format error, logged)."""
        for k in args:
            if k not in ("host", "state", "maxcount"):
                log(f"MONITOR CONNECTION {k}= not emulated")
                raise Refused(ERR_FORMAT)
        if args.get("state", "all") != "all":
            log("MONITOR CONNECTION state= other than all not emulated")
            raise Refused(ERR_FORMAT)
        limit = args.get("maxcount", "")
        if limit and not limit.isdigit():
            raise Refused(ERR_FORMAT)
        host = args.get("host")
        if host is not None:
            try:
                host = str(ipaddress.ip_address(host))
            except ValueError:
                raise Refused(ERR_FORMAT) from None
        rows = [r for r in conntrack_rows() if host is None or host in (r["src"], r["dst"])]
        if limit:
            rows = rows[: int(limit)]
        log(f"listed {len(rows)} connection state(s)")
        return _section_line("Result", rows) + "</serverd>" + OK

    def new_object(self, cmd: str, args: dict[str, str]) -> str:
        name = args.get("name", "")
        table = self.hosts if "HOST" in cmd else self.services
        if not name or any(c in name for c in " \"'="):
            raise Refused(ERR_FORMAT)
        if "HOST" in cmd:
            ip = args.get("ip", "")
            parts = ip.split(".")
            if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
                raise Refused(ERR_FORMAT)
            value = {"ip": ip, "comment": args.get("comment", "")}
        else:
            port, proto = args.get("port", ""), args.get("proto", "")
            if not port.isdigit() or not 0 < int(port) < 65536 or proto not in ("tcp", "udp"):
                raise Refused(ERR_FORMAT)
            value = {"port": port, "proto": proto, "comment": args.get("comment", "")}
        if name in table and args.get("update", "0") == "0":
            raise Refused(ERR_FORMAT)
        table[name] = value
        return OK


def conntrack_sides(host: str) -> dict[str, int]:
    """How many of this namespace's connection tracking entries name `host` as a source (`-s`:
    of the original direction) and as a destination (`-d`), read from /proc/net/nf_conntrack
    without starting a process; both 1 when the table cannot be read (let conntrack look)."""
    try:
        table = Path("/proc/net/nf_conntrack").read_text(encoding="ascii", errors="replace")
    except OSError:
        return {"-s": 1, "-d": 1}
    out = {"-s": 0, "-d": 0}
    for ln in table.splitlines():
        words = ln.split()
        src = next((w for w in words if w.startswith("src=")), None)
        dst = next((w for w in words if w.startswith("dst=")), None)
        out["-s"] += src == f"src={host}"
        out["-d"] += dst == f"dst={host}"
    return out


# conntrack's TCP states as serverd's connection states (MONITOR CONNECTION's state= values)
TCP_STATES = {
    "SYN_SENT": "c_syn", "SYN_RECV": "s_syn", "ESTABLISHED": "data", "FIN_WAIT": "close",
    "CLOSE_WAIT": "close", "LAST_ACK": "close", "TIME_WAIT": "closed", "CLOSE": "closed",
}  # fmt: skip


def conntrack_rows() -> list[dict[str, str]]:
    """This namespace's connection tracking entries (/proc/net/nf_conntrack), each as a
    MONITOR CONNECTION row of its original direction; an unreadable table is the format
    error (serverd could not answer)."""
    try:
        table = Path("/proc/net/nf_conntrack").read_text(encoding="ascii", errors="replace")
    except OSError:
        raise Refused(ERR_FORMAT) from None
    return rows_of(table)


def rows_of(table: str) -> list[dict[str, str]]:
    """The MONITOR CONNECTION rows of a /proc/net/nf_conntrack text."""
    rows = []
    for n, ln in enumerate(table.splitlines(), 1):
        words = ln.split()
        if len(words) < 4:
            continue
        proto = words[2]
        first: dict[str, str] = {}
        for w in words[3:]:
            k, _, v = w.partition("=")
            if k in ("src", "dst", "sport", "dport") and k not in first:
                first[k] = v
        if "src" not in first or "dst" not in first:
            continue
        state = next((TCP_STATES[w] for w in words[3:6] if w in TCP_STATES), "open")
        rows.append(
            {
                "id": str(n),
                "proto": proto,
                "src": first["src"],
                "srcport": first.get("sport", "0"),
                "dst": first["dst"],
                "dstport": first.get("dport", "0"),
                "state": state,
            }
        )
    return rows


LOG: dict[str, Path] = {}  # "file": the API log (set at start)


def log(message: str) -> None:
    line = f"{time.strftime('%H:%M:%S')} {message}\n"
    if "file" in LOG:
        with LOG["file"].open("a", encoding="utf-8") as fh:
            fh.write(line)


@dataclass
class Api:
    device: Device
    username: str
    password: str
    cookies: set[str] = field(default_factory=set)
    sessions: set[str] = field(default_factory=set)


def handler(api: Api) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def setup(self) -> None:
            super().setup()
            # headers and body are two writes: without this, Nagle holds the body until the
            # client's delayed ACK (~40 ms a command); an appliance's web server answers at once
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _send(self, body: bytes, cookie: str | None = None) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            if cookie is not None:
                self.send_header("Set-Cookie", f"NETASQ_sslclient={cookie}; Secure; HttpOnly")
            self.end_headers()
            self.wfile.write(body)

        def _form(self) -> dict[str, str]:
            size = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(min(size, 65536)).decode("utf-8", "replace")
            return {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}

        def _cookie_ok(self) -> bool:
            jar = self.headers.get("Cookie") or ""
            values = {p.split("=", 1)[1] for p in jar.split("; ") if "=" in p}
            return bool(values & api.cookies)

        def do_POST(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            log(f"request POST {path}")
            form = self._form()
            if path == "/auth/admin.html":
                try:
                    user = base64.b64decode(form.get("uid", "")).decode()
                    pswd = base64.b64decode(form.get("pswd", "")).decode()
                except ValueError:
                    user = pswd = ""
                good = hmac.compare_digest(user.encode(), api.username.encode()) and (
                    hmac.compare_digest(pswd.encode(), api.password.encode())
                )
                if not good:
                    log("authentication failed")
                    self._send(b'<?xml version="1.0"?>\n<nws code="100" msg="AUTH_FAILED"/>')
                    return
                cookie = secrets.token_hex(16)
                api.cookies.add(cookie)
                log("authentication succeeded")
                self._send(b'<?xml version="1.0"?>\n<nws code="100" msg="AUTH_SUCCESS"/>', cookie)
                return
            if path == "/api/auth/login":
                if not self._cookie_ok():
                    self._send(_xml(code=205, msg="Authentication error"))
                    return
                sid = secrets.token_hex(12)
                api.sessions.add(sid)
                self._send(
                    _xml(
                        f"<sessionid>{sid}</sessionid><protocol>1.6</protocol>"
                        "<sessionlevel>base,modify,filter,object,network,maintenance"
                        "</sessionlevel>"
                    )
                )
                return
            self.send_error(404)

        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            query = {k: v[0] for k, v in urllib.parse.parse_qs(parts.query).items()}
            log(f"request GET {parts.path}")
            sid = query.get("sessionid", "")
            if parts.path == "/api/auth/logout":
                api.sessions.discard(sid)
                self._send(_xml())
                return
            if sid not in api.sessions or not self._cookie_ok():
                self._send(_xml(code=203, msg="Invalid session"))
                return
            if parts.path == "/api/command":
                cmd = query.get("cmd", "")
                log(f"command {cmd}")
                with api.device.lock:
                    try:
                        part = api.device.run(cmd)
                    except Refused as exc:
                        part = exc.part
                        log(f"refused {cmd}")
                self._send(_xml(part))
                return
            if parts.path.startswith("/api/download/"):
                body = api.device.download
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_error(404)

    return Handler


def main(argv: list[str]) -> int:
    conf = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    LOG["file"] = Path(conf["log"])
    device = Device(
        name=conf["device"],
        interfaces=conf["interfaces"],
        slots=conf["slots"],
        active=conf["active"],
    )
    device.load()
    api = Api(device, conf["username"], conf["password"])
    server = ThreadingHTTPServer((conf["address"], int(conf["port"])), handler(api))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(conf["cert"], conf["key"])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    log(f"listening on {conf['address']}:{conf['port']}")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
