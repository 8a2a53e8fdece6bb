"""Owns the juniper_junos twin device's configuration daemon: one process per twin device, in its
namespace, that holds the candidate and committed configurations, the candidate lock, the commit
history and a pending `commit confirmed` (journaled to `junos-state.json` after every change), and
serves NETCONF (RFC 6241; RFC 6242 framing: `]]>]]>` for the hello, then chunked 1.1 when both
sides say base:1.1) to each session sshd's `netconf` subsystem relays to it (`twin_netconf`).
Because the rollback timer lives here, an unconfirmed `commit confirmed N` really rolls back after
N minutes (the lab may shorten a minute: `--minute`) even when the agent and its SSH session died.

Its configuration has real effects in the namespace: `disable` sets the kernel link down (a
trunk port's: each of its per-VLAN legs, `junos-legs.json`); the firewall filters applied to
interfaces become the twin's own nftables table (`inet junos_twin`), translated from ITS terms
by Junos's documented semantics (terms in order, first terminating action wins, implicit discard
at the end of a filter, `tcp-established` = ACK or RST set, `tcp-initial` = SYN without ACK, an
input filter also sees traffic to the device). `<clear-flow-session>` (an SRX's `clear security
flow session source-prefix|destination-prefix P`) deletes the namespace's conntrack entries from
or to P (`conntrack`, conntrack-tools). It never uses Cordon's renderer or planner. The reply
shapes it follows are in `fixtures/` beside it.

Standard library only (it runs as `python -m`, started by `twin.py`); imports nothing of Cordon."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from agent.platforms.juniper_junos import twin_security

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
JUNOS_NS = "http://xml.juniper.net/junos/23.4R1/junos"
EOM = b"]]>]]>"
TABLE = "junos_twin"
CAPABILITIES = (
    "urn:ietf:params:netconf:base:1.0",
    "urn:ietf:params:netconf:base:1.1",
    "urn:ietf:params:netconf:capability:candidate:1.0",
    "urn:ietf:params:netconf:capability:confirmed-commit:1.0",
    "urn:ietf:params:netconf:capability:validate:1.0",
    "http://xml.juniper.net/netconf/junos/1.0",
    "http://xml.juniper.net/dmi/system/1.0",
)

# -- configuration grammar (the subset Cordon uses, as Junos's `set` statements) ------------

_IFD = r"[a-z]{2,5}(?:-\d{1,2}/\d{1,2}/\d{1,3}(?::\d{1,2})?|\d{0,4})"
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_CIDR = r"\d{1,3}(?:\.\d{1,3}){3}(?:/\d{1,2})?"
_STATEMENTS = [
    re.compile(p)
    for p in (
        rf"^system host-name {_NAME}$",
        rf"^routing-options static route (?:{_CIDR}|default) next-hop {_CIDR}$",
        rf"^interfaces {_IFD} disable$",
        rf"^interfaces {_IFD} description [A-Za-z0-9_.,:/ -]{{1,100}}$",
        rf"^interfaces {_IFD} unit \d{{1,5}} disable$",
        rf"^interfaces {_IFD} unit \d{{1,5}} family inet address {_CIDR}$",
        rf"^interfaces {_IFD} unit \d{{1,5}} family inet filter (?:input|output) {_NAME}$",
        rf"^firewall family inet filter {_NAME} term {_NAME} from (?:interface {_IFD}(?:\.\d+)?|"
        rf"source-address {_CIDR}|destination-address {_CIDR}|protocol (?:tcp|udp|icmp)|"
        r"source-port \d{1,5}|destination-port \d{1,5}|tcp-established|tcp-initial)$",
        rf"^firewall family inet filter {_NAME} term {_NAME} then (?:accept|discard|reject|"
        rf"next term|count {_NAME})$",
    )
]
# statements whose last word is a value that a new `set` replaces (one value at a time)
_SINGLE = [
    (re.compile(r"^(interfaces \S+ unit \d+ family inet filter (?:input|output)) \S+$"), 1),
    (re.compile(r"^(firewall family inet filter \S+ term \S+ then) (?:accept|discard|reject)$"), 1),
    (re.compile(r"^(system host-name) \S+$"), 1),
]
_TERMINATING = ("accept", "discard", "reject")


def statement_ok(stmt: str) -> bool:
    return any(p.match(stmt) for p in _STATEMENTS) or any(
        p.match(stmt) for p in twin_security.STATEMENTS
    )


def _single_key(stmt: str) -> str | None:
    for rx, _ in _SINGLE:
        m = rx.match(stmt)
        if m:
            return m.group(1)
    return twin_security.single_key(stmt)


@dataclass
class LoadError:
    severity: str
    path: str
    message: str
    element: str = ""


def load_set(config: list[str], text: str) -> tuple[list[str], list[LoadError]]:
    """`config` with the `set`/`delete` lines of `text` applied (Junos `load set`): a syntax
    error refuses the whole load (config unchanged); deleting what is absent is a warning."""
    out = list(config)
    errors: list[LoadError] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        verb, _, stmt = line.partition(" ")
        if verb == "set" and statement_ok(stmt):
            key = _single_key(stmt)
            if key is not None:
                out = [s for s in out if _single_key(s) != key]
            if stmt not in out:
                out.append(stmt)
        elif verb == "insert" and stmt.startswith("security policies "):
            moved, problem = twin_security.insert(out, stmt)
            if problem is not None:
                errors.append(LoadError("error", f"[edit {stmt}]"[:200], problem, stmt.split()[-1]))
            out = moved
        elif verb == "delete" and stmt and re.fullmatch(r"[A-Za-z0-9_./:, -]+", stmt):
            kept = [s for s in out if not (s == stmt or s.startswith(stmt + " "))]
            if len(kept) == len(out):
                errors.append(
                    LoadError("warning", f"[edit {stmt}]", "statement not found", stmt.split()[-1])
                )
            out = kept
        else:
            word = stmt.split()[-1] if stmt.split() else verb
            errors.append(LoadError("error", f"[edit {stmt}]"[:200], "syntax error", word))
    if any(e.severity == "error" for e in errors):
        return list(config), errors
    return out, errors


def check(config: list[str]) -> list[LoadError]:
    """`commit check`: every filter an interface refers to is defined, every term of a filter
    has an action."""
    errors: list[LoadError] = []
    defined = {s.split()[4] for s in config if s.startswith("firewall family inet filter ")}
    for s in config:
        m = re.match(r"^interfaces (\S+) unit (\d+) family inet filter (input|output) (\S+)$", s)
        if m and m.group(4) not in defined:
            errors.append(
                LoadError(
                    "error",
                    f"[edit interfaces {m.group(1)} unit {m.group(2)} family inet filter]",
                    f"Referenced filter '{m.group(4)}' is not defined",
                    m.group(3),
                )
            )
    for fname, terms in filters(config).items():
        for tname, term in terms:
            if not term["then"]:
                errors.append(
                    LoadError(
                        "error",
                        f"[edit firewall family inet filter {fname} term {tname}]",
                        "term has no action ('then')",
                        tname,
                    )
                )
    errors += [LoadError("error", p, m, e) for p, m, e in twin_security.check(config)]
    if errors:
        errors.append(LoadError("error", "", "configuration check-out failed"))
    return errors


def filters(config: list[str]) -> dict[str, list[tuple[str, dict[str, list[str]]]]]:
    """filter -> [(term, {"from": [...], "then": [...]})] in the order terms were first set."""
    out: dict[str, list[tuple[str, dict[str, list[str]]]]] = {}
    for s in config:
        w = s.split()
        if w[:4] != ["firewall", "family", "inet", "filter"] or len(w) < 8:
            continue
        terms = out.setdefault(w[4], [])
        term = next((t for n, t in terms if n == w[6]), None)
        if term is None:
            term = {"from": [], "then": []}
            terms.append((w[6], term))
        term[w[7]].append(" ".join(w[8:]))
    return out


# -- effects in the namespace ----------------------------------------------------------------


def _nft_term(  # noqa: PLR0912 - one branch per match condition
    fname: str, term: dict[str, list[str]], kname: Any
) -> str | None:
    """One nft rule for a Junos term (None when it can match nothing here: an interface the
    twin has no kernel link for)."""
    conds: dict[str, list[str]] = {}
    for cond in term["from"]:
        key, _, value = cond.partition(" ")
        conds.setdefault(key, []).append(value)
    parts: list[str] = []

    def any_of(values: list[str]) -> str:
        return values[0] if len(values) == 1 else "{ " + ", ".join(values) + " }"

    if "interface" in conds:
        names = [kname(v) for v in conds["interface"]]
        names = [n for n in names if n]
        if not names:
            return None
        parts.append(f"iifname {any_of([json.dumps(n) for n in names])}")
    if "source-address" in conds:
        parts.append(f"ip saddr {any_of(conds['source-address'])}")
    if "destination-address" in conds:
        parts.append(f"ip daddr {any_of(conds['destination-address'])}")
    proto = conds.get("protocol")
    if proto:
        parts.append(f"meta l4proto {any_of(proto)}")
    ports_of = "tcp" if proto == ["tcp"] else "th"
    if "source-port" in conds:
        parts.append(f"{ports_of} sport {any_of(conds['source-port'])}")
    if "destination-port" in conds:
        parts.append(f"{ports_of} dport {any_of(conds['destination-port'])}")
    if "tcp-established" in conds:
        parts.append("tcp flags & (ack | rst) != 0")
    if "tcp-initial" in conds:
        parts.append("tcp flags & (syn | ack) == syn")
    counts = [t.split(" ", 1)[1] for t in term["then"] if t.startswith("count ")]
    if counts:
        parts.append("counter")
    final = next((t for t in term["then"] if t in _TERMINATING), None)
    if final is None and "next term" not in term["then"]:
        final = "accept"  # an action modifier alone implies accept
    if final == "accept":
        parts.append("return")  # this stage accepts: the packet goes on to the next stage
    elif final in ("discard", "reject"):
        parts.append("drop")
    if counts:  # nft wants the comment last; the counter is read back by it
        parts.append(f"comment {json.dumps(fname + '/' + counts[0])}")
    return " ".join(parts) if parts else "return"


def nft_script(config: list[str], kernel: dict[str, str]) -> str:
    """The twin's own table for the filters `config` applies (empty table when none)."""

    def kname(ifl: str) -> str | None:
        if ifl in kernel:
            return kernel[ifl]
        ifd, _, unit = ifl.partition(".")
        return kernel.get(ifd) if unit in ("", "0") else None

    lines = [f"table inet {TABLE} {{}}", f"delete table inet {TABLE}", f"table inet {TABLE} {{"]
    defined = filters(config)
    chains: dict[str, str] = {}
    for i, (fname, terms) in enumerate(sorted(defined.items())):
        chain = f"f{i}"
        chains[fname] = chain
        lines.append(f"  chain {chain} {{")
        for _tname, term in terms:
            rule = _nft_term(fname, term, kname)
            if rule is not None:
                lines.append(f"    {rule}")
        lines.append("    drop")  # Junos: an implicit discard ends every filter
        lines.append("  }")
    ins: list[str] = []
    outs: list[str] = []
    for s in config:
        m = re.match(r"^interfaces (\S+) unit (\d+) family inet filter (input|output) (\S+)$", s)
        if not m or m.group(4) not in chains:
            continue
        k = kname(f"{m.group(1)}.{m.group(2)}")
        if k is None:
            continue
        if m.group(3) == "input":
            ins.append(f"iifname {json.dumps(k)} jump {chains[m.group(4)]}")
        else:
            outs.append(f"oifname {json.dumps(k)} jump {chains[m.group(4)]}")
    flow, chains_sec = twin_security.nft_chains(twin_security.read(config), kname)
    lines += chains_sec
    for hook, rules in (("forward", ins + outs + flow), ("input", ins), ("output", outs)):
        lines.append(f"  chain {hook} {{")
        lines.append(f"    type filter hook {hook} priority 10; policy accept;")
        lines += [f"    {r}" for r in rules]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)


def disabled(config: list[str], name: str) -> bool:
    """Is inventory interface `name` (`ge-0/0/1`, `irb.110`) administratively down?"""
    ifd, _, unit = name.partition(".")
    if f"interfaces {ifd} disable" in config:
        return True
    return bool(unit) and f"interfaces {ifd} unit {unit} disable" in config


def _kernel_flags(kname: str) -> tuple[bool, bool] | None:
    """(admin up, oper up) of a kernel link, None when the twin has no such link."""
    done = _run(["ip", "-j", "link", "show", "dev", kname])
    if done.returncode != 0:
        return None
    info = json.loads(done.stdout)[0]
    flags = info.get("flags", [])
    return "UP" in flags, "LOWER_UP" in flags and info.get("operstate") != "DOWN"


def _all_kernel_flags() -> dict[str, tuple[bool, bool]]:
    """`_kernel_flags` of every kernel link of the namespace, from one `ip link` listing (one
    process per read, not one per interface: the emulator's cost, not the switch's)."""
    done = _run(["ip", "-j", "link", "show"])
    if done.returncode != 0:
        return {}
    out = {}
    for info in json.loads(done.stdout or "[]"):
        flags = info.get("flags", [])
        out[str(info.get("ifname", ""))] = (
            "UP" in flags,
            "LOWER_UP" in flags and info.get("operstate") != "DOWN",
        )
    return out


def static_routes() -> list[str]:
    """The routes the lab gave this namespace, as the device's static routes (its config)."""
    done = _run(["ip", "-j", "-4", "route", "show"])
    out = []
    for r in json.loads(done.stdout or "[]"):
        if r.get("gateway"):
            dst = "0.0.0.0/0" if r["dst"] == "default" else r["dst"]
            out.append(f"routing-options static route {dst} next-hop {r['gateway']}")
    return out


# -- the device --------------------------------------------------------------------------------


@dataclass
class Commit:
    seq: int
    user: str
    client: str
    at: float
    log: str
    comment: str = ""


@dataclass
class Device:
    dir: Path
    kernel: dict[str, str]  # inventory interface name -> kernel name
    minute: float
    # inventory name -> the kernel links that stand for it when it has none of its own (a trunk
    # port's per-VLAN legs `xe-0-1-0.110`): its admin state is theirs
    legs: dict[str, list[str]] = field(default_factory=dict)
    committed: list[str] = field(default_factory=list)
    candidate: list[str] = field(default_factory=list)
    history: list[Commit] = field(default_factory=list)  # newest first
    pending: dict[str, Any] | None = None  # {"deadline", "rollback_to", "log", "minutes"}
    lock_owner: int | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def journal(self) -> Path:
        return self.dir / "junos-state.json"

    def save(self) -> None:
        data = {
            "committed": self.committed,
            "history": [c.__dict__ for c in self.history[:50]],
            "pending": self.pending,
        }
        tmp = self.journal.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, self.journal)

    def restore(self, initial: list[str]) -> None:
        if self.journal.exists():
            data = json.loads(self.journal.read_text(encoding="utf-8"))
            self.committed = list(data["committed"])
            self.history = [Commit(**c) for c in data["history"]]
            self.pending = data.get("pending")
        else:
            self.committed = list(initial)
            self.history = [Commit(1, "root", "cli", time.time(), "initial configuration")]
        self.candidate = list(self.committed)

    def commit(
        self,
        *,
        log: str,
        confirmed_minutes: int | None = None,
        user: str = "cordon",
        client: str = "netconf",
    ) -> None:
        previous = list(self.committed)
        self.committed = list(self.candidate)
        comment = ""
        if confirmed_minutes is not None:
            # a second `commit confirmed` keeps the first one's fallback
            rollback_to = previous if self.pending is None else self.pending["rollback_to"]
            self.pending = {
                "deadline": time.time() + confirmed_minutes * self.minute,
                "rollback_to": rollback_to,
                "log": log,
                "minutes": confirmed_minutes,
            }
            comment = f"commit confirmed, rollback in {confirmed_minutes}mins"
        else:
            self.pending = None  # any commit confirms a pending `commit confirmed`
        seq = (self.history[0].seq + 1) if self.history else 1
        self.history.insert(0, Commit(seq, user, client, time.time(), log, comment))
        for c in self.history[1:]:
            if c.comment.startswith("commit confirmed, rollback in"):
                c.comment = ""
        self.save()
        self.activate()

    def expire(self) -> None:
        """The confirmed commit's time ran out: load and commit the configuration before it."""
        with self.lock:
            if self.pending is None or time.time() < float(self.pending["deadline"]):
                return
            self.candidate = list(self.pending["rollback_to"])
            self.pending = None
            self.commit(log="", user="root", client="other")
            self.history[0].comment = "automatic rollback: commit confirmed not confirmed"
            self.save()
            print(f"{time.strftime('%H:%M:%S')} commit confirmed rolled back", flush=True)

    def activate(self) -> None:
        """Make the committed configuration real: link states, then the filter table. A kernel
        link that stands for two names (a trunk's leg that is also a declared unit) is up only
        when neither is disabled."""
        want: dict[str, bool] = {}
        for name, kname in sorted(self.kernel.items()):
            up = not disabled(self.committed, name)
            for link in self.legs.get(name, [kname]):
                want[link] = want.get(link, True) and up
        for link, want_up in sorted(want.items()):
            flags = _kernel_flags(link)
            if flags is not None and flags[0] != want_up:
                _run(["ip", "link", "set", "dev", link, "up" if want_up else "down"])
        for s in self.committed:  # a link back up: its static routes come back (as rpd does)
            m = re.match(r"^routing-options static route (\S+) next-hop (\S+)$", s)
            if m:
                _run(["ip", "route", "replace", m.group(1), "via", m.group(2)])
        done = _run(["nft", "-f", "-"], nft_script(self.committed, self.kernel))
        if done.returncode != 0:
            print(f"nft refused the filters: {done.stderr.strip()}", file=sys.stderr, flush=True)


# -- NETCONF -----------------------------------------------------------------------------------


def rpc_error(
    message: str,
    *,
    tag: str = "operation-failed",
    severity: str = "error",
    path: str = "",
    element: str = "",
    etype: str = "protocol",
    info: str = "",
) -> str:
    parts = [
        f"<error-type>{etype}</error-type>",
        f"<error-tag>{tag}</error-tag>",
        f"<error-severity>{severity}</error-severity>",
    ]
    if path:
        parts.append(f"<error-path>{escape(path)}</error-path>")
    parts.append(f"<error-message>{escape(message)}</error-message>")
    if element or info:
        parts.append(
            f"<error-info>{info}"
            + (f"<bad-element>{escape(element)}</bad-element>" if element else "")
            + "</error-info>"
        )
    return "<rpc-error>" + "".join(parts) + "</rpc-error>"


def _errors_xml(errors: list[LoadError]) -> str:
    return "".join(
        rpc_error(
            e.message, severity=e.severity, path=e.path, element=e.element, etype="application"
        )
        for e in errors
    )


class Session:
    def __init__(self, dev: Device, conn: socket.socket, sid: int) -> None:
        self.dev, self.conn, self.sid = dev, conn, sid
        self.buf = b""
        self.chunked = False

    # framing (RFC 6242)
    def _fill(self) -> bool:
        data = self.conn.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def read(self) -> bytes | None:
        if not self.chunked:
            while EOM not in self.buf:
                if not self._fill():
                    return None
            msg, _, self.buf = self.buf.partition(EOM)
            return msg
        out = b""
        while True:
            while not re.match(rb"^\s*\n#(\d+|#)\n", self.buf):
                if not self._fill():
                    return None
            m = re.match(rb"^\s*\n#(\d+|#)\n", self.buf)
            assert m is not None
            self.buf = self.buf[m.end() :]
            if m.group(1) == b"#":
                return out
            size = int(m.group(1))
            while len(self.buf) < size:
                if not self._fill():
                    return None
            out += self.buf[:size]
            self.buf = self.buf[size:]

    def write(self, text: str) -> None:
        data = text.encode()
        if self.chunked:
            self.conn.sendall(b"\n#%d\n" % len(data) + data + b"\n##\n")
        else:
            self.conn.sendall(data + EOM)

    def serve(self) -> None:
        caps = "".join(f"<capability>{c}</capability>" for c in CAPABILITIES)
        self.write(
            f'<?xml version="1.0" encoding="UTF-8"?><hello xmlns="{NC}"><capabilities>'
            f"{caps}</capabilities><session-id>{self.sid}</session-id></hello>"
        )
        hello = self.read()
        if hello is None:
            return
        self.chunked = b"urn:ietf:params:netconf:base:1.1" in hello
        try:
            while (msg := self.read()) is not None:
                reply, close = self.handle(msg)
                self.write(reply)
                if close:
                    return
        finally:
            with self.dev.lock:
                if self.dev.lock_owner == self.sid:  # a session's end releases its lock
                    self.dev.lock_owner = None
                    self.dev.candidate = list(self.dev.committed)

    def handle(self, msg: bytes) -> tuple[str, bool]:
        if b"<!DOCTYPE" in msg or b"<!ENTITY" in msg:
            return self._reply("", rpc_error("DTD not allowed", tag="malformed-message")), False
        try:
            root = ET.fromstring(msg)  # noqa: S314 - DTDs refused above
        except ET.ParseError:
            return self._reply("", rpc_error("syntax error", tag="malformed-message")), False
        mid = root.get("message-id", "")
        ops = list(root)
        if root.tag.rsplit("}", 1)[-1] != "rpc" or len(ops) != 1:
            return self._reply(mid, rpc_error("syntax error, expecting <rpc>")), False
        op = ops[0]
        name = op.tag.rsplit("}", 1)[-1]
        with self.dev.lock:
            handler = getattr(self, "op_" + name.replace("-", "_"), None)
            if handler is None:
                body = rpc_error("syntax error", element=name)
                return self._reply(mid, body), False
            body = handler(op)
        return self._reply(mid, body), name == "close-session"

    def _reply(self, mid: str, body: str) -> str:
        return (
            f'<rpc-reply xmlns="{NC}" xmlns:junos="{JUNOS_NS}" message-id="{escape(mid)}">'
            f"{body}</rpc-reply>"
        )

    def _locked_by_other(self) -> str | None:
        owner = self.dev.lock_owner
        if owner is not None and owner != self.sid:
            return rpc_error(
                f"configuration database locked by: cordon-twin (session {owner})",
                tag="lock-denied",
                info=f"<session-id>{owner}</session-id>",
            )
        return None

    # operations
    def op_lock(self, op: ET.Element) -> str:
        held = self._locked_by_other()
        if held:
            return held
        if self.dev.lock_owner is None and self.dev.candidate != self.dev.committed:
            return rpc_error("configuration database modified", tag="lock-denied")
        self.dev.lock_owner = self.sid
        return "<ok/>"

    def op_unlock(self, op: ET.Element) -> str:
        if self.dev.lock_owner != self.sid:
            return rpc_error(
                "configuration database not locked by this session", tag="operation-failed"
            )
        self.dev.lock_owner = None
        self.dev.candidate = list(self.dev.committed)  # uncommitted changes are discarded
        return "<ok/>"

    def op_discard_changes(self, op: ET.Element) -> str:
        self.dev.candidate = list(self.dev.committed)
        return "<ok/>"

    def op_close_session(self, op: ET.Element) -> str:
        return "<ok/>"

    def op_load_configuration(self, op: ET.Element) -> str:
        held = self._locked_by_other()
        if held:
            return held
        if op.get("action") != "set" or op.get("format") != "text":
            return rpc_error(
                'the twin loads action="set" format="text" only', element="load-configuration"
            )
        text = next(
            (c.text or "" for c in op if c.tag.rsplit("}", 1)[-1] == "configuration-set"), None
        )
        if text is None:
            return rpc_error("missing configuration-set", element="load-configuration")
        new, errors = load_set(self.dev.candidate, text)
        self.dev.candidate = new
        bad = sum(e.severity == "error" for e in errors)
        body = _errors_xml(errors)
        if bad:
            return (
                f"<load-configuration-results>{body}<load-error-count>{bad}"
                "</load-error-count></load-configuration-results>"
            )
        return f"<load-configuration-results>{body}<ok/></load-configuration-results>"

    def op_commit_configuration(self, op: ET.Element) -> str:
        held = self._locked_by_other()
        if held:
            return held
        kids = {c.tag.rsplit("}", 1)[-1]: (c.text or "").strip() for c in op}
        minutes = None
        output = ""
        if "confirmed" in kids:
            raw = kids.get("confirm-timeout") or "10"
            if not raw.isdigit() or not 1 <= int(raw) <= 65535:
                return rpc_error(
                    f"invalid confirm-timeout {raw!r}: 1 to 65535 minutes",
                    element="confirm-timeout",
                )
            minutes = int(raw)
            output = (
                f"<output>commit confirmed will be automatically rolled back in "
                f"{minutes} minutes unless confirmed</output>"
            )
        errors = check(self.dev.candidate)
        if errors:
            return f"<commit-results>{_errors_xml(errors)}</commit-results>"
        if "check" in kids:
            return (
                "<commit-results><routing-engine><name>re0</name><commit-check-success/>"
                "</routing-engine></commit-results>"
            )
        self.dev.commit(log=kids.get("log", ""), confirmed_minutes=minutes)
        return (
            f"<commit-results>{output}<routing-engine><name>re0</name><commit-success/>"
            "</routing-engine></commit-results>"
        )

    def op_get_configuration(self, op: ET.Element) -> str:
        if op.get("format") != "set":
            return rpc_error('the twin serves format="set" only', element="get-configuration")
        db = op.get("database", "candidate")
        lines = self.dev.committed if db == "committed" else self.dev.candidate
        last = self.dev.history[0] if self.dev.history else None
        head = (
            f"## Last commit: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(last.at))}"
            f" by {last.user}\n"
            if last
            else ""
        )
        body = head + "".join(f"set {s}\n" for s in lines)
        return f"<configuration-set>{escape(body)}</configuration-set>"

    def op_get_commit_information(self, op: ET.Element) -> str:
        out = []
        for n, c in enumerate(self.dev.history[:10]):
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(c.at))
            out.append(
                f"<commit-history><sequence-number>{n}</sequence-number><user>{c.user}</user>"
                f'<client>{c.client}</client><date-time junos:seconds="{int(c.at)}">{when}'
                f"</date-time>"
                + (f"<comment>{escape(c.comment)}</comment>" if c.comment else "")
                + (f"<log>{escape(c.log)}</log>" if c.log else "")
                + "</commit-history>"
            )
        return "<commit-information>" + "".join(out) + "</commit-information>"

    def op_get_interface_information(self, op: ET.Element) -> str:
        phys: dict[str, list[str]] = {}
        for name in sorted(self.dev.kernel):
            ifd, _, unit = name.partition(".")
            phys.setdefault(ifd, [])
            if unit:
                phys[ifd].append(name)
        out = []
        links = _all_kernel_flags()
        for index, (ifd, units) in enumerate(sorted(phys.items()), start=500):
            flags = self._link_flags(ifd, links)
            admin = not disabled(self.dev.committed, ifd)
            oper = flags[1] if flags else admin
            logical = []
            for u in units:
                lflags = self._link_flags(u, links)
                ladmin = not disabled(self.dev.committed, u)
                loper = (lflags[1] if lflags else ladmin) and admin
                logical.append(
                    f"<logical-interface><name>{u}</name><admin-status>"
                    f"{'up' if ladmin else 'down'}</admin-status><oper-status>"
                    f"{'up' if loper else 'down'}</oper-status></logical-interface>"
                )
            out.append(
                f"<physical-interface><name>{ifd}</name><admin-status>"
                f"{'up' if admin else 'down'}</admin-status><oper-status>"
                f"{'up' if oper and admin else 'down'}</oper-status><snmp-index>{index}"
                f"</snmp-index>{''.join(logical)}</physical-interface>"
            )
        return "<interface-information>" + "".join(out) + "</interface-information>"

    def _link_flags(
        self, name: str, links: dict[str, tuple[bool, bool]]
    ) -> tuple[bool, bool] | None:
        """(admin up, oper up) of an interface's kernel link, or of its legs (a trunk: up when
        one of them is), None when the twin has neither; `links`: `_all_kernel_flags()`."""
        if name in self.dev.legs:
            seen = [links[leg] for leg in self.dev.legs[name] if leg in links]
            if seen:
                return any(f[0] for f in seen), any(f[1] for f in seen)
        kname = self.dev.kernel.get(name)
        return links.get(kname) if kname is not None else None

    def op_get_security_policies_hit_count(self, op: ET.Element) -> str:
        sec = twin_security.read(self.dev.committed)
        if not sec.present:
            return rpc_error("syntax error", element="get-security-policies-hit-count")
        counts = {k: p for k, (p, _b) in _nft_counters().items()}
        return twin_security.hit_count_reply(sec, counts)

    def op_clear_flow_session(self, op: ET.Element) -> str:
        """`clear security flow session source-prefix P | destination-prefix P` (one of them,
        an IPv4 prefix or address): the namespace's conntrack entries from (to) it go; the next
        packet of one of those connections is then a first packet again and meets the policies.
        A device without security zones (an EX) has no flow sessions: a syntax error."""
        if not twin_security.read(self.dev.committed).present:
            return rpc_error("syntax error", element="clear-flow-session")
        given = [(c.tag.rsplit("}", 1)[-1], (c.text or "").strip()) for c in op]
        if len(given) != 1 or given[0][0] not in ("source-prefix", "destination-prefix"):
            return rpc_error("syntax error", element="clear-flow-session")
        side, value = given[0]
        try:
            prefix = ipaddress.IPv4Network(value, strict=True)
        except ValueError:
            return rpc_error(f"invalid prefix: {value[:40]}", element=side)
        count = 0
        if _tracked(prefix, "src=" if side == "source-prefix" else "dst="):
            flag = "-s" if side == "source-prefix" else "-d"
            done = _run(["conntrack", "-D", flag, str(prefix)])
            m = re.search(r"(\d+) flow entries have been deleted", done.stderr + done.stdout)
            count = int(m.group(1)) if m else 0
        print(f"{time.strftime('%H:%M:%S')} cleared {count} session(s) {side} {prefix}", flush=True)
        return f"<output>{count} active sessions cleared</output>"

    def op_get_firewall_filter_information(self, op: ET.Element) -> str:
        packets = _nft_counters()
        out = []
        for fname, terms in sorted(filters(self.dev.committed).items()):
            counters = []
            for _tname, term in terms:
                for t in term["then"]:
                    if t.startswith("count "):
                        cname = t.split(" ", 1)[1]
                        p, b = packets.get(f"{fname}/{cname}", (0, 0))
                        counters.append(
                            f"<counter><counter-name>{cname}</counter-name><packet-count>{p}"
                            f"</packet-count><byte-count>{b}</byte-count></counter>"
                        )
            out.append(
                f"<filter-information><filter-name>{fname}</filter-name>"
                f"{''.join(counters)}</filter-information>"
            )
        return "<firewall-information>" + "".join(out) + "</firewall-information>"


def _tracked(prefix: ipaddress.IPv4Network, key: str) -> bool:
    """Does a connection tracking entry of this namespace have its `key` (`src=`, `dst=`)
    address in `prefix`? Read from /proc/net/nf_conntrack without starting a process (most
    prefixes have none); True when it cannot be read (conntrack then looks)."""
    try:
        table = Path("/proc/net/nf_conntrack").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True
    for word in table.split():
        if word.startswith(key):
            try:
                if ipaddress.IPv4Address(word[len(key) :]) in prefix:
                    return True
            except ValueError:
                continue
    return False


def _nft_counters() -> dict[str, tuple[int, int]]:
    """(packets, bytes) of every counting rule of the twin's table, by its comment."""
    done = _run(["nft", "-j", "list", "table", "inet", TABLE])
    packets: dict[str, tuple[int, int]] = {}
    if done.returncode == 0:
        for item in json.loads(done.stdout).get("nftables", []):
            rule = item.get("rule")
            if not rule or not rule.get("comment"):
                continue
            for stmt in rule.get("expr", []):
                if isinstance(stmt, dict) and "counter" in stmt:
                    p, b = packets.get(rule["comment"], (0, 0))
                    packets[rule["comment"]] = (
                        p + stmt["counter"]["packets"],
                        b + stmt["counter"]["bytes"],
                    )
    return packets


def _timer(dev: Device) -> None:
    while True:
        time.sleep(0.05)
        try:
            dev.expire()
        except Exception as exc:
            print(f"rollback failed: {exc!r}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="juniper_junos twin configuration daemon")
    ap.add_argument("--dir", required=True, type=Path)
    ap.add_argument("--listen", required=True, help="127.0.0.1:PORT inside the namespace")
    ap.add_argument("--minute", type=float, default=60.0, help="seconds in a confirm minute")
    args = ap.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if not ipaddress.ip_address(host).is_loopback:
        print("the daemon listens on the namespace's loopback only", file=sys.stderr)
        return 2
    kernel = json.loads((args.dir / "junos-ifnames.json").read_text(encoding="utf-8"))
    legs_file = args.dir / "junos-legs.json"
    legs = json.loads(legs_file.read_text(encoding="utf-8")) if legs_file.exists() else {}
    initial = (args.dir / "junos-initial.conf").read_text(encoding="utf-8").splitlines()
    dev = Device(args.dir, kernel, args.minute, legs)
    dev.restore([ln.removeprefix("set ") for ln in initial if ln.strip()] + static_routes())
    dev.activate()
    threading.Thread(target=_timer, args=(dev,), daemon=True).start()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, int(port)))
    srv.listen(32)
    sid = 1000
    while True:
        conn, _ = srv.accept()
        sid += 1
        threading.Thread(target=_serve, args=(dev, conn, sid), daemon=True).start()


def _serve(dev: Device, conn: socket.socket, sid: int) -> None:
    try:
        Session(dev, conn, sid).serve()
    except OSError:
        pass
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
