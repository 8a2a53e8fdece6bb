"""The cisco_iosxe twin device: a per-device daemon in the switch's namespace that holds its
running configuration, answers the IOS-XE CLI subset Cordon uses (one session per connection of
`twin_cli`, which sshd runs at login), and makes it real: `shutdown` sets the kernel link down,
an ACL bound to an interface becomes the twin's own nftables table (`inet iosxe_acl`, translated
from ITS entries: first match, implicit deny, `established` = TCP ACK or RST set), `show ip
access-lists` reads that table's counters, and `configure terminal revert timer N` rolls the
running configuration back by itself after N minutes unless `configure confirm` comes.

The twin's minute lasts `minute_s` seconds (its config file; the lab sets it from
CORDON_TWIN_IOSXE_MINUTE_S, 60 by default: IOS-XE's real unit); tests shorten it.
Documented command/response shapes it follows: `fixtures/*.txt` beside it (sources named there).
Only the twin uses it. Standard library only; run as `python -m ...twin_device CONFIG.json`.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TABLE = "iosxe_acl"
INVALID = "% Invalid input detected at '^' marker."
INCOMPLETE = "% Incomplete command."
NO_PENDING = "%No Rollback Confirmed Change pending"
ARCHIVE_OFF = "%Turn config archive on before using Rollback Confirmed Change"


class CliError(Exception):
    """A refused line: `column` places the caret (None: a message without a caret)."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


@dataclass
class Ace:
    """One entry of an extended ACL: a remark or a permit/deny with its parsed match."""

    seq: int
    text: str  # as shown (`permit tcp host 1.2.3.4 any eq 443`, `remark ...`)
    remark: bool = False
    match: dict[str, Any] = field(default_factory=dict)


@dataclass
class Interface:
    name: str
    kernel: str
    description: str = ""
    addresses: list[str] = field(default_factory=list)  # "A.B.C.D M.M.M.M"
    vlan: int | None = None
    shutdown: bool = False
    groups: dict[str, str] = field(default_factory=dict)  # direction -> ACL name
    # a trunk port: its per-VLAN kernel legs (the twin has no 802.1Q); its state is theirs
    legs: list[str] = field(default_factory=list)


@dataclass
class Config:
    hostname: str
    interfaces: dict[str, Interface]
    acls: dict[str, list[Ace]] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)  # object-group -> entries
    archive_path: str | None = None
    archive: bool = False


# ------------------------------------------------------------------------------- rendering


def running_config(cfg: Config) -> str:
    out = ["Building configuration...", "", "Current configuration : 0 bytes", "!"]
    out += ["version 17.9", f"hostname {cfg.hostname}", "!"]
    if cfg.archive:
        out.append("archive")
        if cfg.archive_path:
            out.append(f" path {cfg.archive_path}")
        out.append("!")
    for name, entries in cfg.groups.items():
        out.append(f"object-group network {name}")
        out += [f" {e}" for e in entries]
        out.append("!")
    for iface in cfg.interfaces.values():
        out.append(f"interface {iface.name}")
        if iface.description:
            out.append(f" description {iface.description}")
        if iface.vlan is not None:
            out += [" switchport access vlan " + str(iface.vlan), " switchport mode access"]
        for i, a in enumerate(iface.addresses):
            out.append(f" ip address {a}" + (" secondary" if i else ""))
        if not iface.addresses and iface.vlan is None:
            out.append(" no ip address")
        for direction in ("in", "out"):
            if direction in iface.groups:
                out.append(f" ip access-group {iface.groups[direction]} {direction}")
        if iface.shutdown:
            out.append(" shutdown")
        out.append("!")
    for name, aces in cfg.acls.items():
        out.append(f"ip access-list extended {name}")
        out += [f" {a.seq} {a.text}" for a in aces]
        out.append("!")
    out.append("end")
    return "\n".join(out) + "\n"


def section(text: str, pattern: str) -> str:
    """IOS `| section REGEX`: every top-level block with a line matching REGEX, whole."""
    rx = re.compile(pattern)
    blocks: list[list[str]] = []
    for line in text.split("\n"):
        if line and not line.startswith(" "):
            blocks.append([line])
        elif blocks and line:
            blocks[-1].append(line)
    hits = [b for b in blocks if any(rx.search(x) for x in b) and not b[0].startswith("!")]
    return "".join(x + "\n" for b in hits for x in b)


# ------------------------------------------------------------------------------- ACL parsing


def _addr(words: list[str], i: int, cfg: Config) -> tuple[dict[str, Any], int]:
    if i >= len(words):
        raise CliError(INCOMPLETE)
    w = words[i]
    if w == "any":
        return {"kind": "any"}, i + 1
    if w == "host":
        if i + 1 >= len(words):
            raise CliError(INCOMPLETE)
        try:
            ipaddress.IPv4Address(words[i + 1])
        except ValueError:
            raise CliError(INVALID, i + 1) from None
        return {"kind": "host", "addr": words[i + 1]}, i + 2
    if w == "object-group":
        if i + 1 >= len(words):
            raise CliError(INCOMPLETE)
        if words[i + 1] not in cfg.groups:
            raise CliError(f"% object-group {words[i + 1]} does not exist")
        return {"kind": "group", "name": words[i + 1]}, i + 2
    try:
        a = ipaddress.IPv4Address(w)
    except ValueError:
        raise CliError(INVALID, i) from None
    if i + 1 >= len(words):
        raise CliError(INCOMPLETE)
    try:
        wild = ipaddress.IPv4Address(words[i + 1])
    except ValueError:
        raise CliError(INVALID, i + 1) from None
    return {"kind": "wild", "addr": str(a), "wild": str(wild)}, i + 2


def _port(words: list[str], i: int) -> tuple[int | None, int]:
    if i < len(words) and words[i] == "eq":
        if i + 1 >= len(words):
            raise CliError(INCOMPLETE)
        if not words[i + 1].isdigit() or not 0 <= int(words[i + 1]) <= 65535:
            raise CliError(INVALID, i + 1)
        return int(words[i + 1]), i + 2
    return None, i


def parse_ace(words: list[str], cfg: Config) -> dict[str, Any]:
    """permit|deny ip|tcp|udp|icmp SRC [eq P] DST [eq P] [established] [match-all +f -f ...]"""
    if len(words) < 2:
        raise CliError(INCOMPLETE)
    proto = words[1]
    if proto not in ("ip", "tcp", "udp", "icmp"):
        raise CliError(INVALID, 1)
    m: dict[str, Any] = {"action": words[0], "proto": proto}
    m["src"], i = _addr(words, 2, cfg)
    if proto in ("tcp", "udp"):
        m["sport"], i = _port(words, i)
    m["dst"], i = _addr(words, i, cfg)
    if proto in ("tcp", "udp"):
        m["dport"], i = _port(words, i)
    while i < len(words):
        w = words[i]
        if w == "established" and proto == "tcp":
            m["established"] = True
            i += 1
        elif w == "match-all" and proto == "tcp":
            flags = []
            i += 1
            while i < len(words) and re.fullmatch(r"[+-](syn|ack|rst|fin|psh|urg)", words[i]):
                flags.append(words[i])
                i += 1
            if not flags:
                raise CliError(INCOMPLETE)
            m["flags"] = flags
        else:
            raise CliError(INVALID, i)
    return m


# ------------------------------------------------------------------------------- effects


def _nft_addr(side: str, a: dict[str, Any], cfg: Config) -> str | None:
    """The nft match of one address ("" for any; None: an empty group, matching nothing)."""
    if a["kind"] == "any":
        return ""
    if a["kind"] == "host":
        return f"ip {side} {a['addr']}"
    if a["kind"] == "group":
        nets = []
        for e in cfg.groups.get(a["name"], []):
            w = e.split()
            if w[0] == "host":
                nets.append(w[1])
            else:
                nets.append(str(ipaddress.IPv4Network(f"{w[0]}/{w[1]}", strict=False)))
        return f"ip {side} {{ {', '.join(nets)} }}" if nets else None
    wild = int(ipaddress.IPv4Address(a["wild"]))
    mask = ipaddress.IPv4Address(~wild & 0xFFFFFFFF)
    base = ipaddress.IPv4Address(int(ipaddress.IPv4Address(a["addr"])) & int(mask))
    return f"ip {side} & {mask} == {base}"


def nft_rule(m: dict[str, Any], cfg: Config) -> str | None:
    """One ACE as an nft rule body (None when it can match nothing)."""
    parts = []
    if m["proto"] != "ip":
        parts.append(f"meta l4proto {m['proto']}")
    for side, key in (("saddr", "src"), ("daddr", "dst")):
        got = _nft_addr(side, m[key], cfg)
        if got is None:
            return None
        if got:
            parts.append(got)
    if m.get("sport") is not None:
        parts.append(f"{m['proto']} sport {m['sport']}")
    if m.get("dport") is not None:
        parts.append(f"{m['proto']} dport {m['dport']}")
    if m.get("established"):
        parts.append("tcp flags & (ack | rst) != 0")
    if m.get("flags"):
        names = [f[1:] for f in m["flags"]]
        want = [f[1:] for f in m["flags"] if f[0] == "+"]
        parts.append(
            f"tcp flags & ({' | '.join(names)}) == " + (f"({' | '.join(want)})" if want else "0x0")
        )
    return " ".join(parts)


def nft_script(cfg: Config, counts: dict[str, tuple[int, int]]) -> str:
    """The twin's table for `cfg`: each bound ACL a chain (permit: return, deny: drop, implicit
    deny at its end), jumped to by the interfaces bound to it (in: forward and input hooks; out:
    forward). Counters carry over from `counts` (key: the rule's comment)."""
    lines = [f"table inet {TABLE} {{}}", f"delete table inet {TABLE}", f"table inet {TABLE} {{"]
    chains: dict[str, str] = {}
    bound = sorted({n for i in cfg.interfaces.values() for n in i.groups.values()})
    for n, name in enumerate(x for x in bound if x in cfg.acls):
        chain = f"acl{n}"
        chains[name] = chain
        lines.append(f"  chain {chain} {{")
        for ace in cfg.acls[name]:
            if ace.remark:
                continue
            body = nft_rule(ace.match, cfg)
            if body is None:
                continue
            key = f"{name} {ace.seq}"
            p, b = counts.get(key, (0, 0))
            verdict = "return" if ace.match["action"] == "permit" else "drop"
            lines.append(f'    {body} counter packets {p} bytes {b} {verdict} comment "{key}"')
        key = f"{name} implicit"
        p, b = counts.get(key, (0, 0))
        lines.append(f'    counter packets {p} bytes {b} drop comment "{key}"')
        lines.append("  }")
    fwd, inp = [], []
    for iface in cfg.interfaces.values():
        for direction, name in iface.groups.items():
            if name not in chains:
                continue  # IOS: an access-group naming no ACL filters nothing
            if direction == "in":
                fwd.append(f'iifname "{iface.kernel}" jump {chains[name]}')
                inp.append(f'iifname "{iface.kernel}" jump {chains[name]}')
            else:
                fwd.append(f'oifname "{iface.kernel}" jump {chains[name]}')
    for chain, hook, rules in (("routed", "forward", fwd), ("to_switch", "input", inp)):
        lines.append(f"  chain {chain} {{")
        lines.append(f"    type filter hook {hook} priority 0; policy accept;")
        lines += [f"    {r}" for r in rules]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def read_counts() -> dict[str, tuple[int, int]]:
    done = subprocess.run(
        ["nft", "-j", "list", "table", "inet", TABLE], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return {}
    out: dict[str, tuple[int, int]] = {}
    for item in json.loads(done.stdout).get("nftables", []):
        rule = item.get("rule") if isinstance(item, dict) else None
        if not rule or "comment" not in rule:
            continue
        for stmt in rule.get("expr", []):
            if isinstance(stmt, dict) and isinstance(stmt.get("counter"), dict):
                c = stmt["counter"]
                out[rule["comment"]] = (int(c["packets"]), int(c["bytes"]))
    return out


# ------------------------------------------------------------------------------- the device


class Device:
    """The switch: its configuration, the effects of it, and its rollback timer."""

    def __init__(self, cfg: Config, minute_s: float, log: Path, *, effects: bool = True) -> None:
        self.cfg = cfg
        self.effects = effects  # False: configuration only (pure tests; never outside a twin)
        self.minute_s = minute_s
        self.lock = threading.RLock()
        self.timer: threading.Timer | None = None
        self.snapshot: Config | None = None
        self.timer_info: tuple[float, int, str] | None = None  # (armed at, minutes, user)
        self.log = log
        self._links: dict[str, bool] = {}
        self.apply_effects()

    def note(self, text: str) -> None:
        if not self.effects:
            return
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%H:%M:%S')} {text}\n")

    def apply_effects(self) -> None:
        """Make the namespace show the configuration: link states, the ACL table."""
        if not self.effects:
            return
        for iface in self.cfg.interfaces.values():
            want = not iface.shutdown
            if self._links.get(iface.name) != want:
                for kernel in iface.legs or [iface.kernel]:
                    subprocess.run(
                        ["ip", "link", "set", kernel, "up" if want else "down"],
                        check=False,
                        capture_output=True,
                    )
                self._links[iface.name] = want
        script = nft_script(self.cfg, read_counts())
        done = subprocess.run(
            ["nft", "-f", "-"], input=script, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            self.note(f"nft refused the translation: {done.stderr.strip()}\n{script}")

    # -- the rollback timer (Configuration Rollback Confirmed Change) --------------------------

    def arm(self, minutes: int, user: str) -> None:
        if not self.cfg.archive or not self.cfg.archive_path:
            raise CliError(ARCHIVE_OFF)
        if self.timer is not None:
            raise CliError("%Rollback Confirmed Change is already in progress")
        self.snapshot = copy.deepcopy(self.cfg)
        self.timer_info = (time.time(), minutes, user)
        self._start(minutes)
        self.note(f"revert timer armed: {minutes} min ({minutes * self.minute_s:g} s here)")

    def _start(self, minutes: int) -> None:
        self.timer = threading.Timer(minutes * self.minute_s, self.expire)
        self.timer.daemon = True
        self.timer.start()

    def expire(self) -> None:
        with self.lock:
            if self.snapshot is None:
                return
            self.note("revert timer expired: rolling back to the archived configuration")
            self.revert()

    def revert(self) -> None:
        assert self.snapshot is not None
        self.cfg = self.snapshot
        self.snapshot = None
        self.timer_info = None
        if self.timer is not None:
            self.timer.cancel()
        self.timer = None
        self.apply_effects()

    def confirm(self) -> None:
        if self.timer is None:
            raise CliError(NO_PENDING)
        self.timer.cancel()
        self.timer, self.snapshot, self.timer_info = None, None, None
        self.note("configure confirm: rollback disarmed")

    def rollback_timer_text(self) -> str:
        if self.timer_info is None:
            return NO_PENDING + "\n"
        at, minutes, user = self.timer_info
        when = time.strftime("%H:%M:%S UTC %b %d %Y", time.gmtime(at))
        return (
            f"Time configured(or Reset) : {when}\n"
            f"Timer type: Revert\nTimer value: {minutes} min\nUser: {user}\n"
        )


class Session:
    """One CLI session: its mode, its prompts, each line's answer."""

    def __init__(self, dev: Device, user: str) -> None:
        self.dev = dev
        self.user = user
        self.mode = "exec"
        self.ctx = ""  # the interface, ACL, object-group of a sub-mode

    @property
    def prompt(self) -> str:
        host = self.dev.cfg.hostname
        sub = {
            "exec": "",
            "config": "(config)",
            "if": "(config-if)",
            "nacl": "(config-ext-nacl)",
            "og": "(config-network-group)",
            "archive": "(config-archive)",
        }[self.mode]
        return f"{host}{sub}#"

    def handle(self, line: str) -> tuple[str, bool]:
        """(output, close the session) of one line."""
        prompt = self.prompt
        words = line.split()
        if not words or line.lstrip().startswith("!"):
            return "", False
        with self.dev.lock:
            try:
                before = json.dumps(self.dev.cfg, default=vars, sort_keys=True)
                out, close = self._dispatch(words)
                if json.dumps(self.dev.cfg, default=vars, sort_keys=True) != before:
                    self.dev.apply_effects()
                return out, close
            except CliError as exc:
                if exc.column is None:
                    return exc.message + "\n", False
                col = len(prompt) + _column(line, exc.column)
                return " " * col + "^\n" + exc.message + "\n", False

    def _dispatch(self, w: list[str]) -> tuple[str, bool]:
        if self.mode == "exec":
            return self._exec(w)
        if w == ["end"]:
            self.mode = "exec"
            return "", False
        if w == ["exit"]:
            self.mode = "config" if self.mode != "config" else "exec"
            return "", False
        sub = {"if": self._if, "nacl": self._nacl, "og": self._og, "archive": self._archive}
        if self.mode in sub:
            try:
                sub[self.mode](w)
                return "", False
            except CliError as exc:
                if exc.column != 0:  # the sub-mode knew the command: its error stands
                    raise
        self._config(w)  # a global command typed in a sub-mode leaves it (IOS)
        return "", False

    # -- exec ----------------------------------------------------------------------------------

    def _exec(self, w: list[str]) -> tuple[str, bool]:
        if w[0] in ("exit", "logout", "quit"):
            return "", True
        if w[:2] == ["terminal", "length"] or w[:2] == ["terminal", "width"]:
            return "", False
        if w[0] in ("configure", "conf"):
            return self._configure(w)
        if w[0] == "show":
            return self._show(w), False
        raise CliError(INVALID, 0)

    def _configure(self, w: list[str]) -> tuple[str, bool]:
        rest = w[1:]
        if rest in (["terminal"], ["t"]):
            self.mode = "config"
            return "Enter configuration commands, one per line.  End with CNTL/Z.\n", False
        if rest[:3] == ["terminal", "revert", "timer"]:
            arg = rest[3:]
            if arg[:1] == ["idle"]:
                arg = arg[1:]
            if not arg:
                raise CliError(INCOMPLETE)
            if not arg[0].isdigit() or not 1 <= int(arg[0]) <= 120 or len(arg) > 1:
                raise CliError(INVALID, len(w) - len(arg))
            self.dev.arm(int(arg[0]), self.user)
            self.mode = "config"
            return (
                "Rollback Confirmed Change: Backing up current running config to "
                f"{self.dev.cfg.archive_path}-{time.strftime('%b-%d-%H-%M-%S')}-0\n"
                "Enter configuration commands, one per line.  End with CNTL/Z.\n"
            ), False
        if rest == ["confirm"]:
            self.dev.confirm()
            return "", False
        if rest == ["revert", "now"]:
            if self.dev.snapshot is None:
                raise CliError(NO_PENDING)
            self.dev.revert()
            self.dev.note("configure revert now: rolled back")
            return "Rollback Done\n", False
        if rest[:2] == ["revert", "timer"] and len(rest) == 3 and rest[2].isdigit():
            if self.dev.timer is None:
                raise CliError(NO_PENDING)
            self.dev.timer.cancel()
            assert self.dev.timer_info is not None
            self.dev.timer_info = (time.time(), int(rest[2]), self.user)
            self.dev._start(int(rest[2]))
            return "", False
        if not rest:
            raise CliError(INCOMPLETE)
        raise CliError(INVALID, 1)

    def _show(self, w: list[str]) -> str:
        line = " ".join(w)
        cmd, _, pipe = line.partition("|")
        args = cmd.split()[1:]
        dev = self.dev
        if args in (["running-config"], ["run"]):
            text = running_config(dev.cfg)
        elif args in (["interfaces"], ["interface"]):
            text = show_interfaces(dev.cfg)
        elif args[:2] in (["ip", "access-lists"], ["access-lists"]):
            text = show_access_lists(
                dev.cfg, args[2] if len(args) > 2 else None, counted=dev.effects
            )
        elif args == ["archive"]:
            text = show_archive(dev.cfg)
        elif args == ["archive", "config", "rollback", "timer"]:
            text = dev.rollback_timer_text()
        else:
            raise CliError(INVALID, min(len(args), 1) + (1 if args else 0))
        pipe = pipe.strip()
        if pipe:
            kind, _, rx = pipe.partition(" ")
            if kind in ("section", "sec"):
                text = section(text, rx.strip())
            elif kind in ("include", "inc", "i"):
                text = "".join(x + "\n" for x in text.split("\n") if re.search(rx.strip(), x))
            else:
                raise CliError(INVALID, len(cmd.split()) + 1)
        return text

    # -- configuration -------------------------------------------------------------------------

    def _config(self, w: list[str]) -> None:  # noqa: PLR0912 - one branch a command
        cfg = self.dev.cfg
        if w[0] == "hostname" and len(w) == 2:
            cfg.hostname = w[1]
        elif w[0] == "interface":
            if len(w) < 2:
                raise CliError(INCOMPLETE)
            name = " ".join(w[1:]).replace(" ", "")
            if name not in cfg.interfaces:
                raise CliError(INVALID, 1)
            self.mode, self.ctx = "if", name
        elif w[:3] == ["ip", "access-list", "extended"]:
            if len(w) != 4:
                raise CliError(INCOMPLETE) if len(w) < 4 else CliError(INVALID, 4)
            _check_name(w[3], 3)
            cfg.acls.setdefault(w[3], [])
            self.mode, self.ctx = "nacl", w[3]
        elif w[:4] == ["no", "ip", "access-list", "extended"] and len(w) == 5:
            cfg.acls.pop(w[4], None)
        elif w[:2] == ["object-group", "network"] and len(w) == 3:
            _check_name(w[2], 2)
            cfg.groups.setdefault(w[2], [])
            self.mode, self.ctx = "og", w[2]
        elif w[:3] == ["no", "object-group", "network"] and len(w) == 4:
            used = [n for n, aces in cfg.acls.items() if any(w[3] in a.text for a in aces)]
            if used:
                raise CliError(f"% Object-group {w[3]} is being used")
            cfg.groups.pop(w[3], None)
        elif w == ["archive"]:
            cfg.archive = True
            self.mode = "archive"
        elif w == ["no", "archive"]:
            cfg.archive, cfg.archive_path = False, None
        else:
            raise CliError(INVALID, 0)

    def _if(self, w: list[str]) -> None:
        iface = self.dev.cfg.interfaces[self.ctx]
        if w == ["shutdown"]:
            iface.shutdown = True
        elif w == ["no", "shutdown"]:
            iface.shutdown = False
        elif w[0] == "shutdown" or w[:2] == ["no", "shutdown"]:
            raise CliError(INVALID, 1 if w[0] == "shutdown" else 2)  # a word too many
        elif w[0] == "description":
            iface.description = " ".join(w[1:])
        elif w[:2] == ["ip", "access-group"]:
            if len(w) != 4:
                raise CliError(INCOMPLETE) if len(w) < 4 else CliError(INVALID, 4)
            if w[3] not in ("in", "out"):
                raise CliError(INVALID, 3)
            _check_name(w[2], 2)
            iface.groups[w[3]] = w[2]
        elif w[:3] == ["no", "ip", "access-group"] and len(w) in (4, 5):
            if w[-1] not in ("in", "out"):
                raise CliError(INVALID, len(w) - 1)
            iface.groups.pop(w[-1], None)
        else:
            raise CliError(INVALID, 0)

    def _nacl(self, w: list[str]) -> None:
        aces = self.dev.cfg.acls[self.ctx]
        seq = None
        if w[0].isdigit():
            seq, w = int(w[0]), w[1:]
            if not w:
                raise CliError(INCOMPLETE)
        if w[0] == "no" and len(w) == 2 and w[1].isdigit():
            self.dev.cfg.acls[self.ctx] = [a for a in aces if a.seq != int(w[1])]
            return
        if w[0] == "remark":
            text = " ".join(w[1:])
            if not text:
                raise CliError(INCOMPLETE)
            if len(text) > 100:
                raise CliError(INVALID, 1)
            aces.append(Ace(_next_seq(aces, seq), f"remark {text}", remark=True))
            return
        if w[0] not in ("permit", "deny"):
            raise CliError(INVALID, 0)
        match = parse_ace(w, self.dev.cfg)
        aces.append(Ace(_next_seq(aces, seq), " ".join(w), match=match))
        aces.sort(key=lambda a: a.seq)

    def _og(self, w: list[str]) -> None:
        entries = self.dev.cfg.groups[self.ctx]
        neg = w[0] == "no"
        body = w[1:] if neg else w
        if len(body) == 2 and body[0] == "host":
            ipaddress.IPv4Address(body[1])
        elif len(body) == 2:
            try:
                ipaddress.IPv4Network(f"{body[0]}/{body[1]}")
            except ValueError:
                raise CliError(INVALID, 1 if neg else 0) from None
        else:
            raise CliError(INVALID, 0)
        text = " ".join(body)
        if neg:
            if text in entries:
                entries.remove(text)
        elif text not in entries:
            entries.append(text)

    def _archive(self, w: list[str]) -> None:
        if w[0] == "path" and len(w) == 2:
            self.dev.cfg.archive_path = w[1]
        elif w == ["no", "path"]:
            self.dev.cfg.archive_path = None
        else:
            raise CliError(INVALID, 0)


def _check_name(name: str, col: int) -> None:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,63}", name):
        raise CliError(INVALID, col)


def _next_seq(aces: list[Ace], seq: int | None) -> int:
    if seq is not None:
        if any(a.seq == seq for a in aces):
            raise CliError("% Duplicate sequence number")
        return seq
    return (max((a.seq for a in aces), default=0) // 10 + 1) * 10


def _column(line: str, word: int) -> int:
    """The column of word number `word` of `line` (the caret goes under it)."""
    pos = 0
    for i, m in enumerate(re.finditer(r"\S+", line)):
        pos = m.start()
        if i == word:
            return pos
    return len(line)


def show_interfaces(cfg: Config) -> str:
    done = subprocess.run(
        ["ip", "-j", "-s", "link", "show"], capture_output=True, text=True, check=False
    )
    kernel = {d["ifname"]: d for d in json.loads(done.stdout or "[]")}
    out = []
    for iface in cfg.interfaces.values():
        legs = [kernel.get(leg, {}) for leg in iface.legs]
        k: dict[str, Any] = kernel.get(iface.kernel) or next((leg for leg in legs if leg), {})
        oper = any(
            x.get("operstate") in ("UP", "UNKNOWN") and "UP" in x.get("flags", [])
            for x in legs or [k]
        )
        if iface.shutdown:
            head = f"{iface.name} is administratively down, line protocol is down "
        else:
            head = f"{iface.name} is {'up' if oper else 'down'}, line protocol is "
            head += "up " if oper else "down "
        out.append(head)
        hw = "Ethernet SVI" if iface.name.startswith("Vlan") else "Gigabit Ethernet"
        out.append(f"  Hardware is {hw}, address is {k.get('address', '0000.0000.0000')}")
        if iface.description:
            out.append(f"  Description: {iface.description}")
        for a in iface.addresses[:1]:
            ip, mask = a.split()
            out.append(f"  Internet address is {ipaddress.IPv4Interface(f'{ip}/{mask}')}")
        st = k.get("stats64", {})
        rx, tx = st.get("rx", {}), st.get("tx", {})
        out.append(
            f"     {rx.get('packets', 0)} packets input, {rx.get('bytes', 0)} bytes, 0 no buffer"
        )
        out.append(
            f"     {tx.get('packets', 0)} packets output, {tx.get('bytes', 0)} bytes, 0 underruns"
        )
    return "\n".join(out) + "\n"


def show_access_lists(cfg: Config, only: str | None, *, counted: bool = True) -> str:
    counts = read_counts() if counted else {}
    out = []
    for name, aces in cfg.acls.items():
        if only is not None and name != only:
            continue
        out.append(f"Extended IP access list {name}")
        for a in aces:
            if a.remark:
                continue
            n = counts.get(f"{name} {a.seq}", (0, 0))[0]
            out.append(
                f"    {a.seq} {a.text}" + (f" ({n} match{'es' if n != 1 else ''})" if n else "")
            )
    return "\n".join(out) + ("\n" if out else "")


def show_archive(cfg: Config) -> str:
    if not cfg.archive:
        return " Archive feature not enabled\n"
    path = cfg.archive_path or ""
    return (
        "The maximum archive configurations allowed is 10.\n"
        "There are currently 0 archive configurations saved.\n"
        f"The next archive file will be named {path}-<timestamp>-0\n"
        " Archive #  Name\n   1\n   2\n   3\n   4\n   5\n   6\n   7\n   8\n   9\n   10\n"
    )


# ------------------------------------------------------------------------------- the server


def load(path: Path) -> tuple[Config, float, Path, Path]:
    data = json.loads(path.read_text(encoding="utf-8"))
    ifaces = {
        i["name"]: Interface(
            i["name"],
            i["kernel"],
            i.get("description", ""),
            i.get("addresses", []),
            i.get("vlan"),
            legs=list(i.get("legs", [])),
        )
        for i in data["interfaces"]
    }
    cfg = Config(
        data["hostname"],
        ifaces,
        archive=bool(data.get("archive_path")),
        archive_path=data.get("archive_path"),
    )
    return cfg, float(data.get("minute_s", 60)), Path(data["socket"]), Path(data["pidfile"])


def serve(conn: socket.socket, dev: Device) -> None:
    f_in, f_out = conn.makefile("r", encoding="utf-8"), conn.makefile("w", encoding="utf-8")
    session: Session | None = None
    try:
        for raw in f_in:
            msg = json.loads(raw)
            if "hello" in msg:
                session = Session(dev, str(msg["hello"])[:32])
                answer: dict[str, object] = {"out": "", "prompt": session.prompt}
            else:
                assert session is not None
                out, close = session.handle(str(msg.get("line", "")))
                answer = {"out": out, "prompt": session.prompt, "close": close}
            f_out.write(json.dumps(answer) + "\n")
            f_out.flush()
    except (OSError, ValueError, AssertionError):
        pass
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    cfg, minute_s, sock_path, pidfile = load(Path(argv[1]))
    dev = Device(cfg, minute_s, pidfile.with_name("iosxe-device.log"))
    sock_path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    os.chmod(sock_path, 0o600)
    server.listen(32)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    pidfile.write_text(f"{os.getpid()}\n", encoding="utf-8")
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn, dev), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
