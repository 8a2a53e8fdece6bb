"""Owns the juniper_junos driver: NETCONF over SSH (RFC 6241/6242) with ncclient, on a paramiko
transport whose host key was checked against its pin before anything was sent (the shared
`agent.drivers.ssh.open_transport`; ncclient never sees a host-key policy). A change is one
candidate transaction: `<lock>`, `<load-configuration action="set" format="text">`,
`<commit-configuration>` (with `<confirmed/>` and `<confirm-timeout>` when a revert is armed),
`<unlock>` (no separate `<check/>` first: a commit checks the candidate itself and commits
nothing when the check fails, so a `commit check` before it was one more round trip and one more
whole validation of the configuration, seconds on an SRX, for the same answer); the read-back is
the committed configuration in `set` format and `<get-interface-information>`; counters come
from `<get-firewall-filter-information>`. Its dead-man is Junos's own `commit confirmed`. What
Cordon's objects are (filters here, security policies on an SRX: `srx_driver`) is behind a few
methods the SRX driver overrides (`_kind`, `_ours`, `_names_listed`, `_converge`,
`_check_committed`, `_differs`, `rule_counters`).
Imports the shared transports (`agent.drivers`), this folder's renderer and parser, audit and
errors; ncclient, lxml and paramiko exceptions stop here."""

from __future__ import annotations

import contextlib
import math
import re
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from xml.sax.saxutils import escape

import paramiko
from ncclient import manager as nc_manager
from ncclient.devices.junos import JunosDeviceHandler
from ncclient.operations import RaiseMode
from ncclient.operations.errors import TimeoutExpiredError
from ncclient.operations.rpc import RPCError
from ncclient.transport.errors import SessionCloseError, TransportError
from ncclient.transport.session import NetconfBase
from ncclient.transport.ssh import SSHSession

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
    Via,
    mismatches,
)
from agent.drivers.ssh import abort, open_transport, translated
from agent.errors import CommandRejected, ConnectError, CordonError, DeviceError, DeviceTimeout
from agent.platforms.juniper_junos import parse
from agent.platforms.juniper_junos.render import PREFIX

T = TypeVar("T")

# Every line a change set may hold (checked before anything is sent): interface disable, and
# Cordon's own filter terms and attachments. No quote, semicolon, brace or newline can pass.
_IFD = r"[a-z]{2,5}(?:-\d{1,2}/\d{1,2}/\d{1,3}(?::\d{1,2})?|\d{0,4})"
_CIDR = r"\d{1,3}(?:\.\d{1,3}){3}/\d{1,2}"
_FNAME = rf"{PREFIX}[A-Za-z0-9_-]{{1,56}}"
_DISABLE_LINE = re.compile(rf"^(?:set|delete) interfaces {_IFD}(?: unit \d{{1,5}})? disable$")
_FILTER_LINE = re.compile(
    rf"^set firewall family inet filter {_FNAME} term [a-z0-9-]{{1,40}} "
    rf"(?:from (?:interface {_IFD}(?:\.\d{{1,5}})?|source-address {_CIDR}|"
    rf"destination-address {_CIDR}|protocol tcp|source-port \d{{1,5}}|destination-port \d{{1,5}}|"
    r"tcp-established|tcp-initial)|then (?:accept|discard|next term|count [a-z0-9-]{1,40}))$"
)
_ATTACH_LINE = re.compile(
    rf"^set interfaces {_IFD} unit \d{{1,5}} family inet filter (?:input|output) {_FNAME}$"
)
_SET_CONFIG = '<get-configuration database="committed" format="set"/>'
_SET_CANDIDATE = '<get-configuration format="set"/>'
_INTERFACES = "<get-interface-information><terse/></get-interface-information>"
_COMMITS = "<get-commit-information/>"


def kind_of(lines: Sequence[str]) -> str:
    """`filters` (Cordon's whole filter configuration; an empty one removes it) or `disable`
    (interface disable lines); ValueError naming the first line that is neither, or a mix."""
    bad = parse.lines_valid(lines)
    if bad:
        raise ValueError(
            f"line {bad[0]!r} holds a control character (a newline would smuggle in another "
            "statement)"
        )
    filters = [ln for ln in lines if _FILTER_LINE.match(ln) or _ATTACH_LINE.match(ln)]
    disables = [ln for ln in lines if _DISABLE_LINE.match(ln)]
    other = [ln for ln in lines if ln not in filters and ln not in disables]
    if other:
        raise ValueError(
            f"line {other[0]!r} is not one Cordon sends to Junos (interface disable, or a "
            f"{PREFIX} filter term or attachment)"
        )
    if filters and disables:
        raise ValueError("a change set mixes filter lines and interface disable lines")
    return "disable" if disables else "filters"


class _PinnedNetconf(SSHSession):  # type: ignore[misc]  # ncclient is untyped
    """ncclient's NETCONF-over-SSH session on a channel of our own pinned, authenticated
    transport: the `netconf` subsystem (RFC 6242), then the hello exchange ncclient does."""

    def attach(self, transport: paramiko.Transport, host: str, timeout: float) -> None:
        self._host = host
        self._transport = transport
        self._connected = True
        self._closing.clear()
        chan = transport.open_session(timeout=timeout)
        self._channel_id = chan.get_id()
        chan.set_name(f"netconf-subsystem-{self._channel_id}")
        chan.invoke_subsystem("netconf")
        self._channel = chan
        self._channel_name = chan.get_name()
        self._post_connect(timeout)
        self.parser = self._device_handler.get_xml_parser(self)

    def send(self, message: str) -> None:
        """Frame and write a request now (RFC 6242: `]]>]]>` until both hellos said base:1.1,
        then chunks). ncclient queues it for its session thread, which looks at the queue only
        between 0.1 s selects: every RPC waited up to 100 ms (measured: 102 ms per
        get-configuration on the twin). paramiko serialises writes on a channel."""
        if not self.connected:
            raise TransportError("Not connected to NETCONF server")
        data = message.encode()
        if self._base == NetconfBase.BASE_11:
            data = b"\n#%d\n" % len(data) + data + b"\n##\n"
        else:
            data += b"]]>]]>"
        self._channel.sendall(data)


class JunosDriver:
    """A Junos device over NETCONF: interfaces from `<get-interface-information>`, Cordon's
    objects (its CORDON- filters and their attachments) in the committed configuration."""

    via: Via = "ssh"

    def __init__(self, target: Target, timeouts: Timeouts | None = None) -> None:
        self.target = target
        self.timeouts = timeouts or Timeouts()
        self._mgr: Any = None
        self._transport: paramiko.Transport | None = None
        self._armed: tuple[str, int] | None = None  # (log token, minutes) for the next commit
        self._committed: dict[str, frozenset[str]] = {}  # token -> Cordon names it committed

    # -- session ---------------------------------------------------------------------------------

    def connect(self) -> None:
        if self.is_open():
            return
        self.close()
        transport = open_transport(self.target, self.timeouts)
        handler = JunosDeviceHandler({"name": "junos"})
        session = _PinnedNetconf(handler)
        try:
            with self._nc("connect", self.timeouts.connect):
                session.attach(transport, self.target.address, self.timeouts.connect)
        except BaseException:
            abort(transport)
            raise
        self._transport = transport
        self._mgr = nc_manager.Manager(
            session, handler, timeout=self.timeouts.command, raise_mode=RaiseMode.ERRORS
        )

    def is_open(self) -> bool:
        return (
            self._mgr is not None
            and self._transport is not None
            and self._transport.is_active()
            and bool(self._mgr.connected)
        )

    def close(self) -> None:
        mgr, transport = self._mgr, self._transport
        self._mgr = self._transport = None
        if mgr is not None:
            with contextlib.suppress(Exception):  # closing must never raise
                mgr.close_session()
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()

    def _abort(self) -> None:
        """Drop the session without a word to the device (never reuse an unknown state)."""
        transport, self._transport, self._mgr = self._transport, None, None
        abort(transport)

    def ping(self) -> None:
        self._rpc(_COMMITS, "ping")

    # -- reads -----------------------------------------------------------------------------------

    def committed(self, operation: str = "read") -> str:
        """The committed configuration in `set` format."""
        return self._parse(operation, parse.config_text, self._rpc(_SET_CONFIG, operation))

    def _facts(self, operation: str, *, interfaces: bool = True) -> Facts:
        ifs = self.interfaces(operation) if interfaces else ()
        config = self.committed(operation)
        return Facts(
            device=self.target.name,
            platform=self.target.device.platform,
            via=self.via,
            interfaces=ifs,
            config=config,
            ours=self._ours(config),
        )

    def facts(self) -> Facts:
        return self._facts("facts")

    def interfaces(self, operation: str = "read") -> tuple[InterfaceState, ...]:
        """Its interfaces alone (`ReadsInterfaces`: a flow verification's read), one RPC; not
        `facts`, which reads the whole committed configuration besides."""
        return self._parse(operation, parse.interfaces, self._rpc(_INTERFACES, operation))

    def backup(self) -> Backup:
        text = self.committed("backup")
        return Backup(
            device=self.target.name,
            platform=self.target.device.platform,
            via=self.via,
            text=text,
            sha256=store_evidence(text),
            ours=self._ours(text) or None,
        )

    def rule_comments(self, operation: str = "read") -> tuple[str, ...] | None:
        """The names of Cordon's filter terms and attachments in the committed configuration,
        in order (`FILTER/TERM`, `@ifd.unit direction FILTER`), None when it holds none."""
        ours = self._ours(self.committed(operation))
        return tuple(self._names_listed(ours)) if ours else None

    def rule_counters(self) -> dict[str, int]:
        """Packets counted by each term of Cordon's filters (`then count`), keyed
        `FILTER/COUNTER` (the counter is named as its term); {} when it has none."""
        reply = self._rpc("<get-firewall-filter-information/>", "counters")
        return self._parse("counters", parse.counters, reply)

    def verify(
        self, expect: Expectation, *, timeout: float | None = None, action: str = "verify"
    ) -> Facts:
        def read() -> tuple[Facts, list[str]]:
            facts = self._facts("verify", interfaces=bool(expect.admin_up or expect.oper_up))
            wrong = mismatches(facts, expect, config=facts.config)
            present = bool(facts.ours)
            if expect.table_present is not None and present != expect.table_present:
                wrong.append(
                    f"{self._home} {'present' if present else 'absent'}, expected "
                    f"{'present' if expect.table_present else 'absent'}"
                )
            if expect.rule_comments is not None:
                have = frozenset(self._names_listed(facts.ours))
                if have != expect.rule_comments:
                    wrong.append(
                        f"{self._home} differ: missing "
                        f"{sorted(expect.rule_comments - have)}, unexpected "
                        f"{sorted(have - expect.rule_comments)}"
                    )
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
        lines = [c.strip() for c in changes.commands if c.strip()]
        try:
            kind = self._kind(lines)
        except ValueError as exc:
            raise DeviceError(
                self.target.name, "apply", f"change set refused before sending: {exc}"
            ) from None
        armed, self._armed = self._armed, None  # an armed revert covers this one commit only
        t0 = time.monotonic()
        sent = list(lines)
        try:
            output, sent = self._transaction(lines, kind, armed)
        except DeviceError as exc:
            trail.change_failed(
                self.target, via=self.via, changes=changes, commands=sent, exc=exc, started=t0
            )
            raise
        if armed is not None or kind in self._checked_kinds:
            committed = self.committed("apply")
            self._check_committed(kind, sent, committed)
            if armed is not None:
                self._committed[armed[0]] = frozenset(self._names_listed(self._ours(committed)))
        return trail.change_applied(
            self.target, via=self.via, changes=changes, commands=sent, output=output, started=t0
        )

    def _transaction(
        self, lines: list[str], kind: str, armed: tuple[str, int] | None
    ) -> tuple[str, list[str]]:
        """Lock, load, commit (confirmed when armed: the commit checks the candidate first and
        commits nothing if the check fails), unlock; on a refusal the candidate is discarded and
        unlocked, and nothing was committed. Returns the output and the lines
        loaded."""
        with self._locked("apply"):
            if kind != "disable":  # converge: every CORDON- object out, the wanted ones in
                have = self._parse("apply", parse.config_text, self._rpc(_SET_CANDIDATE, "apply"))
                lines = self._converge(have, lines)
            if not lines:
                return "", lines
            try:
                load = self._rpc(
                    '<load-configuration action="set" format="text"><configuration-set>'
                    + escape("\n".join(lines))
                    + "</configuration-set></load-configuration>",
                    "apply",
                    command="load set",
                )
                if armed is not None:
                    token, minutes = armed
                    commit = (
                        "<commit-configuration><confirmed/>"
                        f"<confirm-timeout>{minutes}</confirm-timeout><log>{token}</log>"
                        "</commit-configuration>"
                    )
                    done = self._rpc(commit, "apply", command=f"commit confirmed {minutes}")
                else:
                    commit = "<commit-configuration><log>cordon</log></commit-configuration>"
                    done = self._rpc(commit, "apply", command="commit")
            except CommandRejected:
                self._discard()
                raise
        warnings = [f"{s}: {m}" for s, _p, m in self._parse("apply", parse.rpc_errors, load)]
        return scrub("\n".join([*warnings, _outputs(done)]).strip()), lines

    @contextmanager
    def _locked(self, operation: str) -> Iterator[None]:
        self._rpc("<lock><target><candidate/></target></lock>", operation, command="lock candidate")
        try:
            yield
        finally:
            with contextlib.suppress(DeviceError):
                self._rpc("<unlock><target><candidate/></target></unlock>", operation)

    def _discard(self) -> None:
        with contextlib.suppress(DeviceError):
            self._rpc("<discard-changes/>", "apply")

    # -- dead-man: Junos's own `commit confirmed` -------------------------------------------------

    def arm_revert(self, changes: ChangeSet, seconds: float) -> str:
        """Make the next `apply` a `commit confirmed` of ceil(`seconds` / 60) minutes (Junos
        counts its confirm timeout in minutes): unless `confirm`ed in time, the device itself
        rolls back to the configuration committed now. Refused unless what is committed now is
        what `changes` would make (the device's rollback lands where the plan says)."""
        lines = [c.strip() for c in changes.commands if c.strip()]
        try:
            kind = self._kind(lines)
        except ValueError as exc:
            raise DeviceError(self.target.name, "arm", f"revert refused: {exc}") from None
        config = self.committed("arm")
        wrong = self._differs(config, lines, kind)
        if wrong:
            raise DeviceError(
                self.target.name,
                "arm",
                f"the committed configuration is not the fail-safe state its own rollback would "
                f"restore ({wrong}); refusing to arm",
                hint="read the device back (`cordon resume`, `cordon status`) before retrying",
            )
        minutes = max(1, math.ceil(seconds / 60))
        token = f"cordon-deadman-{secrets.token_hex(6)}"
        self._armed = (token, minutes)
        trail.change(
            self.target,
            via=self.via,
            action=f"{changes.action}.arm",
            commands=(),
            outcome="ok",
            duration_s=0.0,
            output=f"next commit is `commit confirmed {minutes}` (log {token})",
        )
        return token

    def confirm(self, token: str) -> bool:
        """Confirm the commit armed as `token`: True once a read-back shows it confirmed (no
        commit waits for a confirmation any more, the confirming commit is the newest, and
        Cordon's objects are still the ones committed); False when the device already rolled
        back by itself (nothing is committed then). Never trusts the commit's reply alone."""
        pending = self._parse("confirm", parse.pending_confirm, self._rpc(_COMMITS, "confirm"))
        if pending != token:
            self._confirmed("fired", token)
            return False
        done = f"{token} confirmed"
        with self._locked("confirm"):
            self._rpc(
                f"<commit-configuration><log>{done}</log></commit-configuration>",
                "confirm",
                command="commit",
            )
        history = self._rpc(_COMMITS, "confirm")
        still = self._parse("confirm", parse.pending_confirm, history)
        newest = self._parse("confirm", parse.newest_log, history)
        if still is not None or newest != done:
            raise DeviceError(
                self.target.name,
                "confirm",
                f"read-back after the confirming commit shows pending {still!r}, newest commit "
                f"{newest!r}: the confirmation did not take",
            )
        expected = self._committed.pop(token, None)
        if expected is not None:
            have = frozenset(self._names_listed(self._ours(self.committed("confirm"))))
            if have != expected:  # the timer won the race: the fail-safe state is committed
                self._confirmed("fired", token)
                return False
        self._confirmed("ok", token)
        return True

    def _confirmed(self, outcome: str, token: str) -> None:
        trail.change(
            self.target,
            via=self.via,
            action="deadman.confirm",
            commands=(),
            outcome=outcome,
            duration_s=0.0,
            output=f"{token}: {'confirmed' if outcome == 'ok' else 'already rolled back'}",
        )

    # -- what differs between a Junos EX (filters) and an SRX (security policies) ----------------

    _home = f"{PREFIX} filters"
    _checked_kinds: frozenset[str] = frozenset()  # kinds read back line by line after commit

    def _kind(self, lines: Sequence[str]) -> str:
        return kind_of(lines)

    def _ours(self, config: str) -> str:
        return parse.ours(config)

    def _names_listed(self, ours: str) -> list[str]:
        return parse.names_listed(ours)

    def _converge(self, candidate: str, lines: list[str]) -> list[str]:
        """The statements that make Cordon's objects in `candidate` exactly `lines`."""
        return parse.delete_lines(parse.ours(candidate)) + lines

    def _check_committed(self, kind: str, sent: Sequence[str], committed: str) -> None:
        """Raise DeviceError when the committed configuration does not hold what was sent."""

    def _differs(self, config: str, lines: Sequence[str], kind: str) -> str:
        return _differs(config, lines, kind)

    # -- plumbing --------------------------------------------------------------------------------

    def _rpc(self, xml: str, operation: str, *, command: str | None = None) -> str:
        """Send one RPC; its reply as text. An `<rpc-error>` of severity error raises
        CommandRejected (`command`) or DeviceError; a lost session is dropped, never reused."""
        self.connect()
        try:
            with self._nc(operation, self.timeouts.command, command=command or xml[:60]):
                return str(self._mgr.rpc(xml))
        except DeviceError as exc:
            if not isinstance(exc, CommandRejected):
                self._abort()
            raise

    @contextmanager
    def _nc(self, operation: str, timeout: float, *, command: str = "") -> Iterator[None]:
        name = self.target.name
        try:
            with translated(self.target, operation, timeout):
                yield
        except CordonError:
            raise
        except RPCError as exc:
            errors = getattr(exc, "errors", None) or [exc]
            text = "; ".join(
                f"{getattr(e, 'path', None) or ''} {getattr(e, 'message', None) or e}".strip()
                for e in errors
            )
            raise CommandRejected(name, operation, command, scrub(text)) from None
        except TimeoutExpiredError:
            raise DeviceTimeout(name, operation, f"no NETCONF reply within {timeout:g} s") from None
        except (SessionCloseError, TransportError) as exc:
            raise ConnectError(
                name, operation, f"NETCONF session lost: {scrub(str(exc))[:200]}"
            ) from None

    def _parse(self, operation: str, parser: Callable[[str], T], text: str) -> T:
        try:
            return parser(text)
        except ValueError as exc:
            raise DeviceError(
                self.target.name, operation, f"unexpected device reply: {exc}"
            ) from None


def _outputs(reply: str) -> str:
    """The `<output>` lines of a commit reply (`commit confirmed will be automatically rolled
    back in N minutes unless confirmed`)."""
    return "\n".join(m.strip() for m in re.findall(r"<output>([^<]*)</output>", reply))


def _differs(config: str, lines: Sequence[str], kind: str) -> str:
    """How the committed `config` differs from what `lines` would make ("" when it does not)."""
    if kind == "filters":
        want = parse.names_in("\n".join(lines))
        have = parse.names_in(parse.ours(config))
        if want == have:
            return ""
        return f"missing {sorted(want - have)}, unexpected {sorted(have - want)}"
    present = {ln.strip() for ln in config.splitlines()}
    off = []
    for ln in lines:
        statement = "set " + ln.split(" ", 1)[1]
        if ln.startswith("set ") and statement not in present:
            off.append(f"not disabled: {statement[4:-8]}")
        elif ln.startswith("delete ") and statement in present:
            off.append(f"disabled: {statement[4:-8]}")
    return ", ".join(off)
