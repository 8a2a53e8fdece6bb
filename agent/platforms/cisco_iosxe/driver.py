"""Owns the cisco_iosxe driver: netmiko (`cisco_xe`) on the pinned paramiko transport of the
cisco_ios driver (host key checked before authenticating, prompt first), the convergence of
Cordon's ACLs to a whole-state script, their exact read-back, `show ip access-lists` counters,
and IOS-XE's own dead-man (Configuration Rollback Confirmed Change).
Imports the cisco_ios driver (its pinned session and netmiko plumbing), this folder's renderer
and parser, the shared trail, audit and errors; must not import pysnmp, the engine or the CLI.

The dead-man (`arm_revert` / `confirm`), as Cisco documents it ("Configuration Rollback
Confirmed Change", Managing Configuration Files Configuration Guide, IOS XE 16/17):
`configure terminal revert timer <1-120 minutes>` enters configuration mode and archives the
running configuration at once; unless `configure confirm` comes within the time, the device
replaces its running configuration with that archive (every change made since, by any
session, is undone). `configure revert now` rolls back at once, `configure revert timer N`
restarts the timer. It needs the configuration archive (`archive` with a `path`; without it
IOS answers `%Turn config archive on before using Rollback Confirmed Change`); `show archive`
says `Archive feature not enabled` then. `show archive config rollback timer` shows the
pending timer (`Timer value: N min`) or `%No Rollback Confirmed Change pending`, which is also
the answer of `configure confirm` when nothing waits (the timer fired, or someone confirmed).
So `arm_revert(changes, s)` arms the device's rollback to its configuration NOW, which is the
state `changes` (the undo of the step about to be sent) describes; its timer is `s` rounded up
to whole minutes. `confirm` sends `configure confirm` and reads the timer back."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TypeVar

from agent.audit import store_evidence
from agent.audit.redact import scrub
from agent.drivers import trail
from agent.drivers.base import (
    ApplyResult,
    Backup,
    ChangeSet,
    Expectation,
    Facts,
    InterfaceState,
    Target,
    Timeouts,
    mismatches,
)
from agent.errors import CommandRejected, DeviceError
from agent.platforms.cisco_ios.driver import IosDriver
from agent.platforms.cisco_ios.session import _PinnedIosSession
from agent.platforms.cisco_iosxe import parse, render

T = TypeVar("T")

TIMER_MIN, TIMER_MAX = 1, 120  # minutes, as `configure terminal revert timer` takes them


class _XeSession(_PinnedIosSession):
    """The pinned IOS session, as netmiko's `cisco_xe` device type."""

    def __init__(self, target: Target, timeouts: Timeouts) -> None:
        super().__init__(target, timeouts)
        self.device_type = "cisco_xe"


def revert_minutes(seconds: float) -> int:
    """A dead-man of `seconds` as IOS-XE's revert timer: whole minutes, rounded up, 1 to 120."""
    if seconds <= 0:
        raise ValueError("a revert timer must be positive")
    return min(TIMER_MAX, max(TIMER_MIN, math.ceil(seconds / 60)))


class IosXeDriver(IosDriver):
    """A Cisco IOS-XE switch (Catalyst): shutdowns, Cordon's ACLs, the native revert timer."""

    def connect(self) -> None:
        if self.is_open():
            return
        self.close()
        session = _XeSession(self.target, self.timeouts)
        with self._netmiko("connect", self.timeouts.connect):
            session._open()
        self._session = session

    # -- reads -----------------------------------------------------------------------------------

    def _read(
        self, s: _PinnedIosSession, operation: str, *, config: bool = True, ifs: bool = True
    ) -> Facts:
        found = (
            self._parse(operation, parse.parse_show_interface, s.command("show interfaces"))
            if ifs
            else ()
        )
        text = s.command("show running-config") if config else ""
        return Facts(
            device=self.target.name,
            platform=self.target.device.platform,
            via=self.via,
            interfaces=found,
            config=text,
            ours=parse.ours(text),
        )

    def facts(self) -> Facts:
        return self._run("facts", lambda s: self._read(s, "facts"))

    def interfaces(self, operation: str = "read") -> tuple[InterfaceState, ...]:
        """Its interfaces alone (`ReadsInterfaces`: a flow verification's read), one command;
        not `facts`, which reads the whole running configuration besides."""
        return self._run(operation, lambda s: self._read(s, operation, config=False)).interfaces

    def backup(self) -> Backup:
        text = self._run("backup", lambda s: s.command("show running-config"))
        ours = parse.ours(text)
        return Backup(
            device=self.target.name,
            platform=self.target.device.platform,
            via=self.via,
            text=text,
            sha256=store_evidence(text),
            ours=ours or None,
        )

    def rule_comments(self, operation: str = "read") -> tuple[str, ...] | None:
        """The remark of each Cordon rule in order, None when no Cordon ACL exists."""
        text = self._run(operation, lambda s: s.command("show running-config | section CORDON"))
        if not parse.cordon_acls(text):
            return None
        return tuple(parse.remarks_in_order(text))

    def rule_counters(self) -> dict[str, int]:
        """Matches of each Cordon rule (`show ip access-lists`), keyed by its remark."""

        def read(s: _PinnedIosSession) -> tuple[str, str]:
            return s.command("show running-config | section CORDON"), s.command(
                "show ip access-lists"
            )

        config, shown = self._run("counters", read)
        return parse.counters(config, shown)

    def verify(
        self, expect: Expectation, *, timeout: float | None = None, action: str = "verify"
    ) -> Facts:
        wants_config = (
            expect.needs_config
            or expect.rule_comments is not None
            or expect.table_present is not None
        )

        wants_ifs = bool(expect.admin_up or expect.oper_up)  # an ACL change reads no port

        def read() -> tuple[Facts, list[str]]:
            facts = self._run(
                "verify",
                lambda s: self._read(s, "verify", config=wants_config, ifs=wants_ifs),
            )
            return facts, mismatches(facts, expect) + self._rule_mismatches(facts, expect)

        return trail.verify_loop(
            self.target,
            via=self.via,
            action=action,
            read=read,
            timeout=self.timeouts.settle if timeout is None else timeout,
        )

    @staticmethod
    def _rule_mismatches(facts: Facts, expect: Expectation) -> list[str]:
        out: list[str] = []
        acls = parse.cordon_acls(facts.config)
        binds = {k: v for k, v in parse.bindings(facts.config).items() if v.startswith("CORDON-")}
        if expect.table_present is not None and bool(acls) != expect.table_present:
            out.append("Cordon ACLs " + ("missing" if expect.table_present else "present"))
        if expect.rule_comments is not None:
            have = parse.rule_comments_in(facts.config)
            for c in sorted(expect.rule_comments - have):
                out.append(f"missing rule {c!r}")
            for c in sorted(have - expect.rule_comments):
                out.append(f"unexpected rule {c!r}")
            for (iface, direction), name in sorted(binds.items()):
                if name not in acls:
                    out.append(f"{iface} {direction}: bound to {name}, which does not exist")
            for name in sorted(set(acls) - set(binds.values())):
                out.append(f"ACL {name} is not bound to any interface")
        return out

    # -- change ----------------------------------------------------------------------------------

    def apply(self, changes: ChangeSet) -> ApplyResult:
        commands = [c.rstrip() for c in changes.commands if c.strip()]
        if commands and commands[0].strip() == render.SCRIPT_HEAD:
            lines = self._run("apply", lambda s: self._converge(s, commands))
            changes = ChangeSet(tuple(lines), action=changes.action)
        return super().apply(changes)

    def _converge(self, s: _PinnedIosSession, script: list[str]) -> list[str]:
        """The configuration lines that make the device's Cordon objects exactly `script`'s:
        object-groups filled from the device's interface addresses, new ACLs defined, bindings
        swapped (one command each: never a moment unfiltered), old bindings and ACLs removed."""
        config = s.command("show running-config")
        want = parse.sections("\n".join(script[1:]))
        want_acls = {
            sec.head.split()[3]: sec.body for sec in want if sec.head.startswith("ip access-list")
        }
        want_binds: dict[tuple[str, str], str] = {}
        for sec in want:
            if sec.head.startswith("interface "):
                for b in sec.body:
                    _, _, name, direction = b.split()
                    want_binds[(sec.head.split(None, 1)[1], direction)] = name
        have_acls = parse.cordon_acls(config)
        have_binds = {
            k: v for k, v in parse.bindings(config).items() if v.startswith(render.PREFIX + "-")
        }
        lines = self._groups(config, script)
        for name, body in want_acls.items():
            if have_acls.get(name) == body:
                continue
            if name in have_acls:  # same name, other content: someone edited it
                lines.append(f"no ip access-list extended {name}")
            lines += [f"ip access-list extended {name}", *(f" {b}" for b in body)]
        for (iface, direction), name in sorted(want_binds.items()):
            if have_binds.get((iface, direction)) != name:
                lines += [f"interface {iface}", f" ip access-group {name} {direction}"]
        for (iface, direction), name in sorted(have_binds.items()):
            if (iface, direction) not in want_binds:
                lines += [f"interface {iface}", f" no ip access-group {name} {direction}"]
        lines += [
            f"no ip access-list extended {n}" for n in sorted(set(have_acls) - set(want_acls))
        ]
        used = {render.net_group(i) for i in self._group_interfaces(config, script)}
        lines += [
            f"no object-group network {n}" for n in sorted(set(parse.net_groups(config)) - used)
        ]
        return lines

    def _group_interfaces(self, config: str, script: list[str]) -> list[str]:
        networks = parse.interface_networks(config)
        by_token = {render.acl_token(name): name for name in networks}
        out = []
        for token in render.net_groups(script):
            if token not in by_token:
                raise DeviceError(
                    self.target.name,
                    "apply",
                    f"interface {token.replace('_', '/')} has no IP address on the device: it "
                    "cannot stand for its subnet in an ACL",
                    hint="give the SVI its address (the zone's gateway) or fix the inventory",
                )
            out.append(by_token[token])
        return out

    def _groups(self, config: str, script: list[str]) -> list[str]:
        """Lines that make each `CORDON-NET-<if>` object-group exactly `<if>`'s networks."""
        networks = parse.interface_networks(config)
        have = parse.net_groups(config)
        lines: list[str] = []
        for iface in self._group_interfaces(config, script):
            name = render.net_group(iface)
            want = [f"{n.network_address} {n.netmask}" for n in networks[iface]]
            old = have.get(name)
            if old == want:
                continue
            lines.append(f"object-group network {name}")
            lines += [f" no {e}" for e in (old or []) if e not in want]
            lines += [f" {e}" for e in want if e not in (old or [])]
        return lines

    # -- the native dead-man ---------------------------------------------------------------------

    def archive_ready(self, operation: str = "arm") -> str:
        """The archive `path` the revert timer needs; DeviceError saying what to configure when
        the archive is off or has no path."""

        def read(s: _PinnedIosSession) -> tuple[str, str]:
            return s.command("show archive"), s.command("show running-config | section archive")

        shown, config = self._run(operation, read)
        enabled = self._parse(operation, parse.archive_enabled, shown)
        path = parse.archive_path(config)
        if not enabled or path is None:
            raise DeviceError(
                self.target.name,
                operation,
                "the configuration archive is not configured ("
                + ("`show archive`: Archive feature not enabled" if not enabled else "no path")
                + "): IOS-XE cannot arm its revert timer (configure terminal revert timer)",
                hint="configure it once on the switch: `archive` / ` path flash:cordon-archive`",
            )
        return path

    def _pending(self, s: _PinnedIosSession, operation: str) -> bool:
        text = s.command("show archive config rollback timer")
        return self._parse(operation, parse.rollback_pending, text)

    def arm_revert(self, changes: ChangeSet, seconds: float) -> str:
        """Arm the device's rollback to its configuration now (`changes`, the step's undo,
        describes that state); unless confirmed within `seconds` (whole minutes, rounded up),
        the device rolls back by itself. Checked by reading the timer back. The archive is not
        read first (two commands per armed step). Any refusal of the timer (in whatever words:
        `%Turn config archive on ...` is documented by third parties only) or a timer not
        running after it: the session that typed it is dropped, never reused (it may be left in
        config mode), and the archive is read on a new one (`archive_ready`) to say what to
        configure; with the archive there, the device's own words."""
        minutes = revert_minutes(seconds)
        t0 = time.monotonic()
        command = f"configure terminal revert timer {minutes}"

        def arm(s: _PinnedIosSession) -> str | None:
            if self._pending(s, "arm"):
                raise DeviceError(
                    self.target.name,
                    "arm",
                    "a Rollback Confirmed Change is already pending on the device (another "
                    "session's timer): Cordon does not arm over it",
                    hint="`show archive config rollback timer` on the switch; confirm or revert it",
                )
            out = s.command(command)
            err = parse.refusal(out)
            if err is not None:
                return err
            s.command("end")
            if self._pending(s, "arm"):
                return None
            said = " ".join(out.split())
            return "the revert timer is not running" + (f" (it said: {said})" if said else "")

        err = self._run("arm", arm)
        if err is not None:
            self._abort()  # never reused: what mode it is left in is not known
            self.archive_ready("arm")  # on a new session; raises saying what to configure
            raise CommandRejected(self.target.name, "arm", command, scrub(err))
        trail.change(
            self.target,
            via=self.via,
            action=f"{changes.action}.arm",
            commands=(command,),
            outcome="ok",
            duration_s=time.monotonic() - t0,
            output=f"revert armed for {minutes} min",
        )
        return f"{minutes}m@{time.time():.0f}"

    def confirm(self, token: str) -> bool:
        """`configure confirm`; True if the device had the rollback waiting and shows none
        left, False if it had already rolled back (`No Rollback Confirmed Change pending`)."""
        t0 = time.monotonic()

        def run(s: _PinnedIosSession) -> tuple[str, bool]:
            return s.command("configure confirm"), self._pending(s, "confirm")

        out, pending = self._run("confirm", run)
        fired = parse.NO_PENDING.lower() in out.lower()
        if pending:
            raise DeviceError(
                self.target.name, "confirm", "the revert timer still runs after configure confirm"
            )
        trail.change(
            self.target,
            via=self.via,
            action="deadman.confirm",
            commands=("configure confirm",),
            outcome="fired" if fired else "ok",
            duration_s=time.monotonic() - t0,
        )
        return not fired


def run_on(driver: IosXeDriver, fn: Callable[[_PinnedIosSession], T], operation: str) -> T:
    """Run `fn` on the driver's session (benchmarks and tests read the device with it)."""
    return driver._run(operation, fn)
