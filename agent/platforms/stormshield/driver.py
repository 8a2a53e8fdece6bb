"""Owns the stormshield driver: the SNS "SSL API" (serverd over HTTPS, the protocol of the
official client `stormshield.sns.sslclient`) spoken over the pinned connection of
`agent.drivers.tls`, so the certificate is checked against the group's pin before a byte (the
password included) is sent. Cordon's rules live in the active filter policy, first, each
commented `cordon ...`; a change converges them to the script and activates the policy as one
unit (`CONFIG FILTER ACTIVATE`), then reads back the active policy. SNS rules see a connection's
first packet only: when a change adds block rules, the driver then flushes the connection states
of the hosts they apply to that hold states (one read of `MONITOR CONNECTION`, then `MONITOR
FLUSH STATE <ip>`, one host per command; every host the cut applies to when that read fails;
which hosts: `agent.platforms.stormshield.flush`), so connections opened before the cut meet it
too.

No native safety net: SNS has no commit-confirm or revert timer (only `CONFIG RESTORE` of a
backup), so the driver offers no `DeadMan`; the executor's controller-side dead-man applies
(`agent.run.transaction.guarded`: the fail-safe state is re-applied as soon as the appliance
answers again, and the step is reported failed).

Why not the client library itself: it pins nothing (`sslverifypeer`/`cabundle` check a CA,
`sslverifyhost` a name; no fingerprint option), so pinning would mean replacing the adapter of
its private `requests` session; and it logs every answer (backups, session ids) on the root
logger at DEBUG. The protocol is four small requests (its source, read for this module:
`/auth/admin.html`, `/api/auth/login`, `/api/command`, `/api/download`, `/api/auth/logout`).
Imports the shared transports (`agent.drivers`), this folder's renderer, parser and wire
reader, audit, secrets and errors; never the twin."""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import time
import urllib.parse
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import TypeVar

from agent.audit import store_evidence
from agent.audit.redact import scrub
from agent.drivers import tls, trail
from agent.drivers.base import (
    ApplyResult,
    Backup,
    ChangeSet,
    Expectation,
    Facts,
    InterfaceState,
    Target,
    Timeouts,
    Via,
    mismatches,
)
from agent.errors import AuthError, CommandRejected, ConnectError, DeviceError, DeviceTimeout
from agent.platforms.stormshield import flush, parse, render, serverd
from agent.secrets import resolve

T = TypeVar("T")

APP = "sslclient"  # the application name the official client announces


class Session:
    """One authenticated serverd session over one pinned HTTPS connection."""

    def __init__(self, target: Target, timeouts: Timeouts) -> None:
        self.target = target
        self.timeouts = timeouts
        self.conn: http.client.HTTPSConnection | None = None
        self.cookie = ""
        self.sid = ""

    # -- HTTP ------------------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, body: str | None, operation: str
    ) -> tuple[int, bytes, http.client.HTTPResponse]:
        assert self.conn is not None
        headers = {"Accept-Encoding": "identity", "User-Agent": "cordon"}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookie:
            headers["Cookie"] = self.cookie
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except TimeoutError as exc:
            raise DeviceTimeout(
                self.target.name, operation, f"no answer within {self.timeouts.command:g} s"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise ConnectError(self.target.name, operation, f"HTTPS: {exc}") from exc
        return resp.status, data, resp

    def _wire(self, operation: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except serverd.WireError as exc:
            raise DeviceError(self.target.name, operation, f"unexpected answer: {exc}") from None

    # -- session ---------------------------------------------------------------------------------

    def open(self) -> None:
        https = self.target.device.https
        name = self.target.name
        if https is None or https.username is None or https.password is None:
            raise AuthError(
                name,
                "connect",
                "no HTTPS username and password in the inventory",
                hint="set https.username and https.password ('file:' reference) on the device",
            )
        password = resolve(https.password, base_dir=self.target.base_dir, what=f"{name} https")
        self.conn = tls.connect(self.target, self.timeouts.connect)  # pin checked: nothing sent
        self.conn.timeout = self.timeouts.command
        if self.conn.sock is not None:
            self.conn.sock.settimeout(self.timeouts.command)
        form = urllib.parse.urlencode(
            {
                "uid": base64.b64encode(https.username.encode()).decode(),
                "pswd": base64.b64encode(password.encode()).decode(),
                "app": APP,
            }
        )
        status, data, resp = self._request("POST", "/auth/admin.html", form, "connect")
        if status != 200:
            raise ConnectError(name, "connect", f"authentication page answered HTTP {status}")
        msg, delay = self._wire("connect", lambda: serverd.auth_result(data))
        if msg == "ERR_BRUTEFORCE":
            raise AuthError(name, "connect", f"brute force protection: retry in {delay} s")
        if msg != "AUTH_SUCCESS":
            raise AuthError(
                name, "connect", f"authentication refused ({msg})", hint="check https.password"
            )
        jar: SimpleCookie = SimpleCookie()
        for header in resp.headers.get_all("Set-Cookie") or []:
            jar.load(header)
        self.cookie = "; ".join(f"{k}={m.value}" for k, m in jar.items())
        form = urllib.parse.urlencode({"app": APP, "id": "0"})
        status, data, _ = self._request("POST", "/api/auth/login", form, "connect")
        if status != 200:
            raise ConnectError(name, "connect", f"session request answered HTTP {status}")
        code, msg, sid = self._wire("connect", lambda: serverd.session(data))
        if code != serverd.NWS_OK or not sid:
            what = serverd.NWS_MSG.get(code, msg)
            raise AuthError(name, "connect", f"no serverd session: {code} {what}")
        self.sid = sid

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):  # closing never raises
            if self.sid:
                conn.request(
                    "GET",
                    "/api/auth/logout?sessionid=" + urllib.parse.quote(self.sid),
                    headers={"Cookie": self.cookie},
                )
                conn.getresponse().read()
        with contextlib.suppress(Exception):
            conn.close()

    @property
    def alive(self) -> bool:
        return self.conn is not None and self.conn.sock is not None

    # -- commands --------------------------------------------------------------------------------

    def command(self, cmd: str, operation: str, *, check: bool = True) -> serverd.Reply:
        """Run one serverd command; CommandRejected (the appliance's answer line) when it
        refuses it and `check`."""
        if any(not ch.isprintable() for ch in cmd):
            raise DeviceError(
                self.target.name,
                operation,
                f"command {cmd[:60]!r} refused before sending: control characters",
            )
        path = (
            "/api/command?sessionid="
            + urllib.parse.quote(self.sid)
            + "&cmd="
            + urllib.parse.quote(cmd.encode("utf-8"))
        )
        status, data, _ = self._request("GET", path, None, operation)
        if status != 200:
            raise DeviceError(self.target.name, operation, f"`{cmd[:60]}`: HTTP {status}")
        r = self._wire(operation, lambda: serverd.reply(data))
        if r.nws != serverd.NWS_OK:
            what = serverd.NWS_MSG.get(r.nws, r.nws_msg)
            if r.nws in (203, 204, 205):
                raise AuthError(self.target.name, operation, f"serverd session: {what}")
            if check:
                raise CommandRejected(self.target.name, operation, cmd, f"{r.nws} {what}")
        elif check and not r.ok:
            raise CommandRejected(self.target.name, operation, cmd, r.status)
        return r

    def download(self, operation: str, announced: serverd.Reply) -> bytes:
        crc, size = self._wire(operation, lambda: serverd.download_announce(announced))
        path = "/api/download/tmp.file?sessionid=" + urllib.parse.quote(self.sid)
        status, data, _ = self._request("GET", path, None, operation)
        if status != 200:
            raise DeviceError(self.target.name, operation, f"download: HTTP {status}")
        if len(data) != size or serverd.sns_crc(data) != crc:
            raise DeviceError(
                self.target.name,
                operation,
                f"download: {len(data)} bytes crc {serverd.sns_crc(data)}, announced {size} "
                f"bytes crc {crc}",
            )
        return data


class StormshieldDriver:
    """A Stormshield SNS appliance (firmware 4.x) over its serverd HTTPS API."""

    via: Via = "ssh"  # the platform's own management channel (here HTTPS), as opposed to SNMP

    def __init__(self, target: Target, timeouts: Timeouts | None = None) -> None:
        self.target = target
        self.timeouts = timeouts or Timeouts()
        self._session: Session | None = None

    # -- session ---------------------------------------------------------------------------------

    def connect(self) -> None:
        if self.is_open():
            return
        self.close()
        s = Session(self.target, self.timeouts)
        try:
            s.open()
        except BaseException:
            s.close()
            raise
        self._session = s

    def is_open(self) -> bool:
        return self._session is not None and self._session.alive

    def close(self) -> None:
        s, self._session = self._session, None
        if s is not None:
            s.close()

    def ping(self) -> None:
        self._cmd("CONFIG SLOT LIST type=filter", "ping")

    def _cmd(self, cmd: str, operation: str, *, check: bool = True) -> serverd.Reply:
        self.connect()
        assert self._session is not None
        try:
            return self._session.command(cmd, operation, check=check)
        except CommandRejected:
            raise
        except DeviceError:
            self.close()  # the session's state is unknown: never reuse it
            raise

    def _parse(self, operation: str, parser: Callable[[serverd.Reply], T], r: serverd.Reply) -> T:
        try:
            return parser(r)
        except ValueError as exc:
            raise DeviceError(
                self.target.name, operation, f"unexpected device output: {exc}"
            ) from None

    # -- reads -----------------------------------------------------------------------------------

    def slot(self, operation: str) -> str:
        return self._parse(
            operation, parse.active_slot, self._cmd("CONFIG SLOT LIST type=filter", operation)
        )

    def policy(
        self, operation: str, *, clone: bool = False, slot: str | None = None
    ) -> list[parse.SnsRule]:
        """The rules of the active filter policy (`clone`: as being edited, not activated); of
        slot `slot` when the caller read which one is active already (else one more command)."""
        slot = self.slot(operation) if slot is None else slot
        r = self._cmd(
            f"CONFIG FILTER EXPLICIT index={int(slot)} type=filter output=xml"
            + (" useclone=1" if clone else ""),
            operation,
        )
        return self._parse(operation, lambda x: parse.explicit(x.element), r)

    def _interfaces(self, operation: str) -> tuple[InterfaceState, ...]:
        r = self._cmd("CONFIG NETWORK INTERFACE SHOW", operation)
        return self._parse(operation, parse.interfaces, r)

    def interfaces(self, operation: str = "read") -> tuple[InterfaceState, ...]:
        """Its interfaces alone (`ReadsInterfaces`: a flow verification's read)."""
        return self._interfaces(operation)

    def facts(self) -> Facts:
        rules = self.policy("facts")
        return Facts(
            device=self.target.name,
            platform=self.target.device.platform,
            via=self.via,
            interfaces=self._interfaces("facts"),
            config="".join(r.line + "\n" for r in rules),
            ours=parse.ours_text(rules),
        )

    def backup(self) -> Backup:
        """The full configuration (`CONFIG BACKUP list=all`, downloaded, size and CRC checked),
        stored as evidence; Cordon's rules as read back."""
        self.connect()
        assert self._session is not None
        r = self._cmd("CONFIG BACKUP list=all", "backup")
        if serverd.WAIT_DOWNLOAD not in (r.code, *self._first_codes(r)):
            raise DeviceError(self.target.name, "backup", f"no download announced: {r.status}")
        try:
            data = self._session.download("backup", r)
        except DeviceError:
            self.close()
            raise
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:  # an appliance's .na archive is binary
            text = base64.b64encode(data).decode()
        ours = parse.ours_text(self.policy("backup"))
        return Backup(
            device=self.target.name,
            platform=self.target.device.platform,
            via=self.via,
            text=text,
            sha256=store_evidence(text),
            ours=ours or None,
        )

    @staticmethod
    def _first_codes(r: serverd.Reply) -> tuple[str, ...]:
        return (r.text.split("code=", 1)[1].split(" ", 1)[0],) if "code=" in r.text else ()

    def rule_comments(self, operation: str = "read") -> tuple[str, ...] | None:
        """The comment of each Cordon rule of the active policy, in order; None when it holds
        none."""
        found = tuple(r.comment for r in self.policy(operation) if r.ours)
        return found or None

    def rule_counters(self) -> dict[str, int]:
        """Hits of each Cordon rule (`MONITOR FILTER`), keyed by comment; {} when none."""
        r = self._cmd("MONITOR FILTER", "counters")
        counted = self._parse("counters", parse.hits, r)
        return {c: n for c, n in counted.items() if c.startswith(f"{render.MARK} ")}

    def set_interface(self, name: str, *, up: bool) -> None:
        """Enable or disable an interface (`CONFIG NETWORK INTERFACE UPDATE`, then activate)."""
        render.check_name("interface", name)
        changes = ChangeSet(
            (
                f"CONFIG NETWORK INTERFACE UPDATE ifname={name} state={1 if up else 0}",
                "CONFIG NETWORK ACTIVATE",
            ),
            action="interface.up" if up else "interface.down",
        )
        self._send(changes, list(changes.commands))

    def verify(
        self, expect: Expectation, *, timeout: float | None = None, action: str = "verify"
    ) -> Facts:
        def read() -> tuple[Facts, list[str]]:
            rules = self.policy("verify")
            ifs = self._interfaces("verify") if expect.admin_up or expect.oper_up else ()
            ours = parse.ours_text(rules)
            facts = Facts(
                device=self.target.name,
                platform=self.target.device.platform,
                via=self.via,
                interfaces=ifs,
                ours=ours,
            )
            wrong = mismatches(facts, expect, config=ours)
            mine = [r for r in rules if r.ours]
            if expect.table_present is not None and bool(mine) != expect.table_present:
                wrong.append(
                    f"Cordon rules {'present' if mine else 'absent'} in the active policy, "
                    f"expected {'present' if expect.table_present else 'absent'}"
                )
            if expect.rule_comments is not None:
                have = [r.comment for r in mine]
                if sorted(have) != sorted(expect.rule_comments):
                    wrong.append(
                        "Cordon rules of the active policy differ: missing "
                        f"{sorted(expect.rule_comments - set(have))}, unexpected "
                        f"{sorted(set(have) - expect.rule_comments)}, duplicated "
                        f"{sorted({c for c in have if have.count(c) > 1})}"
                    )
            first_other = next((r.position for r in rules if not r.ours), None)
            late = [r for r in mine if first_other is not None and r.position > first_other]
            if late:
                wrong.append(
                    f"Cordon rule(s) after the site's rule at position {first_other}: "
                    f"{[r.comment for r in late]} (they would never match first)"
                )
            changed = [r.comment for r in mine if parse.edited(r)]
            if changed:
                wrong.append(f"Cordon rule(s) edited on the appliance: {changed}")
            return facts, wrong

        return trail.verify_loop(
            self.target,
            via=self.via,
            action=action,
            read=read,
            timeout=self.timeouts.settle if timeout is None else timeout,
        )

    # -- change ----------------------------------------------------------------------------------

    def apply(self, changes: ChangeSet) -> ApplyResult:
        """Converge Cordon's rules of the active policy to `changes` (the renderer's script:
        object lines, then the wanted rule lines) and activate the policy as one unit; then,
        when it adds block rules, read the active policy back and flush the connection states
        of the hosts they cut that hold states (`flush`), each flush a journaled command of the
        change."""
        lines = [c.strip() for c in changes.commands if c.strip() and not c.startswith("#")]
        wrong = [
            c
            for c in lines
            if not c.startswith((render.INSERT + " ", "CONFIG OBJECT "))
            or (c.startswith(render.INSERT) and f'comment="{render.MARK} ' not in c)
        ]
        if wrong:
            raise DeviceError(
                self.target.name,
                "apply",
                f"line {wrong[0][:80]!r} refused before sending",
                hint="the agent writes only object lines and rules commented 'cordon ...'",
            )
        objects = [c for c in lines if c.startswith("CONFIG OBJECT ")]
        wanted = [c for c in lines if c.startswith(render.INSERT)]
        t0 = time.monotonic()
        sent: list[str] = []
        output = ""
        try:
            self.connect()
            active = self.slot("apply")  # every command of the change names it (a flush rereads)
            slot = int(active)
            before = frozenset(r.comment for r in self.policy("apply", slot=active) if r.ours)
            states = self._flush_plan(wanted, objects, before)
            for c in objects:
                sent.append(c)
                self._cmd(c, "apply")
            edited = self.policy("apply", clone=True, slot=active)
            mine = sorted((r for r in edited if r.ours), key=lambda r: r.position)
            kept = _kept(mine, wanted)
            for r in reversed(mine[kept:]):
                c = f"CONFIG FILTER RULE REMOVE index={slot} type=filter position={r.position}"
                sent.append(c)
                self._cmd(c, "apply")
            for n, c in enumerate(wanted[kept:], kept + 1):
                full = c.replace(
                    f"{render.INSERT} type=filter",
                    f"{render.INSERT} index={slot} type=filter position={n}",
                    1,
                )
                sent.append(full)
                self._cmd(full, "apply")
            sent.append("CONFIG FILTER ACTIVATE")
            self._cmd("CONFIG FILTER ACTIVATE", "apply")
            if states.hosts:
                output = self._flush(states, wanted, sent)
        except DeviceError as exc:
            if isinstance(exc, CommandRejected) and exc.command.startswith(flush.COMMAND):
                exc.hint = (
                    "the new policy IS active; connections opened before it by the hosts not "
                    "yet flushed go on until they end"
                )
            elif isinstance(exc, CommandRejected):
                exc.hint = (
                    "nothing was activated (the policy is activated only at the end); the "
                    "policy being edited may hold part of the change: the next apply replaces "
                    "Cordon's rules whole"
                )
            trail.change_failed(
                self.target, via=self.via, changes=changes, commands=sent, exc=exc, started=t0
            )
            raise
        return trail.change_applied(
            self.target, via=self.via, changes=changes, commands=sent, output=output, started=t0
        )

    def _flush_plan(
        self, wanted: list[str], objects: list[str], before: frozenset[str]
    ) -> flush.Flush:
        interfaces = {i.name: i.address for i in self.target.device.interfaces}
        try:
            return flush.plan(wanted, objects, before, interfaces)
        except ValueError as exc:
            raise DeviceError(
                self.target.name,
                "apply",
                f"nothing sent: the connection states to flush cannot be worked out: {exc}",
            ) from None

    def _flush(self, states: flush.Flush, wanted: list[str], sent: list[str]) -> str:
        """Once the new policy is active and read back holding the block rules that call for
        it (the active slot read again: another admin may have switched it since the change
        read it), flush the states of those of `states.hosts` that hold states (`MONITOR FLUSH
        STATE`, one host per command; all of them when the connection table is not known):
        their connections opened before the cut meet the new policy's rules again."""
        blocks = {
            flush.tokens(c).get("comment", "")
            for c in wanted
            if flush.tokens(c).get("action") == "block"
        }
        active = {r.comment for r in self.policy("apply") if r.ours}
        missing = sorted(blocks - active)
        if missing:
            raise DeviceError(
                self.target.name,
                "apply",
                f"read-back after activation lacks Cordon rule(s) {missing[:3]}: no connection "
                "state flushed",
            )
        if len(states.hosts) > 1:  # for one host the read would cost what it could save
            states = flush.narrow(states, self._holding())
        for c in states.commands():
            sent.append(c)
            self._cmd(c, "apply")
        return states.summary()

    def _holding(self) -> frozenset[ipaddress.IPv4Address] | str:
        """The addresses holding connection states now (`MONITOR CONNECTION`, read once the new
        policy is active), or why they are not known: then every wanted host is flushed."""
        try:
            r = self._cmd(flush.LISTING, "apply")
        except DeviceError as exc:
            return f"MONITOR CONNECTION failed: {exc}"
        if r.format != "section_line":
            return f"MONITOR CONNECTION answered no section_line data ({r.status})"
        try:
            return flush.holding([row for rows in r.lines.values() for row in rows])
        except ValueError as exc:
            return f"MONITOR CONNECTION answer not understood: {exc}"

    def _send(self, changes: ChangeSet, commands: list[str]) -> None:
        t0 = time.monotonic()
        try:
            for c in commands:
                self._cmd(c, "apply")
        except DeviceError as exc:
            trail.change_failed(
                self.target, via=self.via, changes=changes, commands=commands, exc=exc, started=t0
            )
            raise
        trail.change_applied(
            self.target,
            via=self.via,
            changes=changes,
            commands=commands,
            output=scrub(""),
            started=t0,
        )


def _kept(mine: list[parse.SnsRule], wanted: list[str]) -> int:
    """How many of Cordon's rules in the edited policy (`mine`, in position order) stay as they
    are: the longest run from the top of the policy (positions 1, 2, ...) whose every rule is,
    token for token, the wanted line at its place. Only the rest is removed and inserted (a step
    that adds rules after the last step's resends no rule of it: one command per rule less,
    twice); what the policy holds after is the same as removing all of them and inserting all."""
    kept = 0
    for n, (r, line) in enumerate(zip(mine, wanted, strict=False), 1):
        if r.position != n or r.line != line:
            break
        kept = n
    return kept
