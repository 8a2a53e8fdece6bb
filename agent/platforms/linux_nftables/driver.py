"""Owns the linux_nftables driver: a shell per firewall, `nft -c -f` then `nft -f`, our table only;
its dead-man is `revert`. Imports the shared transports (`agent.drivers`), this folder's parser,
audit and errors; must not import netmiko, pysnmp, the engine or the CLI; paramiko errors stop
here."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import paramiko

from agent.audit import store_evidence
from agent.audit.redact import scrub
from agent.drivers import trail
from agent.drivers.base import (
    CORDON_TABLE,
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
from agent.drivers.ssh import Run, Shell, abort, open_transport
from agent.errors import CommandRejected, DeviceError
from agent.network.state import NftRule
from agent.platforms.capabilities import FlowDecision, FlowQuery, Traffic
from agent.platforms.linux_nftables import evaluate, parse, revert, traffic

T = TypeVar("T")

_FAMILY, _TABLE = CORDON_TABLE.split()


def nft_replace(body: Iterable[str], *, action: str = "change") -> ChangeSet:
    """A change set that atomically replaces the agent's table with `table inet cordon { body }`
    (created if absent). `body` is the table's content: chains, sets, rules."""
    return ChangeSet(
        (
            f"table {CORDON_TABLE}",
            f"delete table {CORDON_TABLE}",
            f"table {CORDON_TABLE} {{",
            *(f"    {line}" for line in body),
            "}",
        ),
        action=action,
    )


def nft_remove(*, action: str = "undo") -> ChangeSet:
    """A change set that removes the agent's table, and with it exactly the agent's rules
    (idempotent: the first line creates it if it does not exist)."""
    return ChangeSet((f"table {CORDON_TABLE}", f"delete table {CORDON_TABLE}"), action=action)


def counter_packets(expr: str) -> int | None:
    """Packets of the first anonymous `counter` statement of a rule, from its expressions as
    `nft -j` gives them (JSON text); None when the rule has no counter (a named counter
    reference is not the rule's own count)."""
    try:
        statements: Any = json.loads(expr)
    except json.JSONDecodeError as exc:
        raise ValueError(f"rule expressions are not JSON: {exc.msg}") from None
    if not isinstance(statements, list):
        raise ValueError("rule expressions are not a list")
    for stmt in statements:
        counter = stmt.get("counter") if isinstance(stmt, dict) else None
        if isinstance(counter, dict):
            packets = counter.get("packets")
            if not isinstance(packets, int) or isinstance(packets, bool) or packets < 0:
                raise ValueError(f"counter without a packet count: {counter!r}")
            return packets
    return None


class NftablesDriver:
    """A Linux firewall: interfaces from `ip -j link`, rules in the agent's own nftables table."""

    via: Via = "ssh"

    def __init__(self, target: Target, timeouts: Timeouts | None = None) -> None:
        self.target = target
        self.timeouts = timeouts or Timeouts()
        self._transport: paramiko.Transport | None = None
        self._shell: Shell | None = None

    # -- session ---------------------------------------------------------------------------------

    def connect(self) -> None:
        if self.is_open():
            return
        self.close()
        transport = open_transport(self.target, self.timeouts)
        try:
            self._shell = Shell(transport, self.target, self.timeouts)
        except BaseException:
            transport.close()
            raise
        self._transport = transport

    def is_open(self) -> bool:
        return (
            self._transport is not None
            and self._transport.is_active()
            and self._shell is not None
            and not self._shell.closed
        )

    def close(self) -> None:
        shell, transport = self._shell, self._transport
        self._shell = self._transport = None
        for thing in (shell, transport):
            if thing is not None:
                with contextlib.suppress(Exception):  # closing must never raise
                    thing.close()

    def ping(self) -> None:
        self._run("true", operation="ping")

    # -- reads -----------------------------------------------------------------------------------

    def _interfaces(self, operation: str) -> tuple[InterfaceState, ...]:
        r = self._ok(self._run("ip -j -s link show", operation=operation), operation)
        return self._parse(operation, parse.parse_ip_link_json, r.out)

    def _ruleset(self, operation: str) -> str:
        return self._ok(self._run("nft list ruleset", operation=operation), operation).out

    def interfaces(self, operation: str = "read") -> tuple[InterfaceState, ...]:
        """Its interfaces alone (`ReadsInterfaces`: a flow verification's read)."""
        return self._interfaces(operation)

    def facts(self) -> Facts:
        interfaces = self._interfaces("facts")
        ruleset = self._ruleset("facts")
        ours = self._parse("facts", parse.extract_nft_table, ruleset)
        return Facts(
            device=self.target.name,
            platform=self.target.device.platform,
            via=self.via,
            interfaces=interfaces,
            config=ruleset,
            ours=ours or "",
        )

    def backup(self) -> Backup:
        ruleset = self._ruleset("backup")
        ours = self._parse("backup", parse.extract_nft_table, ruleset)
        return Backup(
            device=self.target.name,
            platform=self.target.device.platform,
            via=self.via,
            text=ruleset,
            sha256=store_evidence(ruleset),
            ours=ours,
        )

    def our_rules(self, operation: str = "read") -> parse.NftRuleset | None:
        """The agent's table as parsed JSON, or None when it does not exist."""
        r = self._run(f"nft -j list table {CORDON_TABLE}", operation=operation)
        if r.rc != 0:
            if "No such file or directory" in r.err:
                return None
            self._ok(r, operation)
        return self._parse(operation, parse.parse_nft_json, r.out)

    def rule_comments(self, operation: str = "read") -> tuple[str, ...] | None:
        """The comment of each rule of our table, in order ("" for none), None when the table
        does not exist (one `nft -j list table inet cordon`)."""
        rules = self.our_rules(operation)
        if rules is None:
            return None
        return tuple(r.comment or "" for r in rules.rules)

    def rule_counters(self) -> dict[str, int]:
        """Packets counted by each rule of our table that has a `counter` and a `comment`, keyed
        by the comment (rules sharing a comment are summed); {} when the table is absent.

        One `nft -j list table inet cordon`: the counters of all rules are read together."""
        rules = self.our_rules("counters")
        if rules is None:
            return {}
        out: dict[str, int] = {}
        for rule in rules.rules_of(_FAMILY, _TABLE):
            if not rule.comment:
                continue
            packets = self._parse("counters", counter_packets, rule.expr)
            if packets is not None:
                out[rule.comment] = out.get(rule.comment, 0) + packets
        return out

    def rule_traffic(self, rules: Sequence[NftRule]) -> list[Traffic | None]:
        """Packets and bytes counted by the lines of our table for each of `rules` (found by
        rule id, see `traffic`); None for a rule the table does not hold. One
        `nft -j list table inet cordon`."""
        table = self.our_rules("traffic")
        return self._parse("traffic", lambda _: traffic.per_rule(table, rules), "")

    def decide_flows(self, queries: Sequence[FlowQuery]) -> list[FlowDecision]:
        """What this firewall's forward hook does with each packet: its whole live ruleset (one
        `nft -j list ruleset`: Cordon's table and every table beside it) evaluated
        (`evaluate`); UNKNOWN, naming why, where the rules hold what it does not evaluate."""
        text = self._ok(self._run("nft -j list ruleset", operation="decide"), "decide").out
        chains = self._parse("decide", evaluate.load, text)
        return [evaluate.decide(chains, q) for q in queries]

    def verify(
        self, expect: Expectation, *, timeout: float | None = None, action: str = "verify"
    ) -> Facts:
        def read() -> tuple[Facts, list[str]]:
            rules = self.our_rules("verify")
            ifs = self._interfaces("verify") if expect.admin_up or expect.oper_up else ()
            ours = ""
            if expect.needs_config and rules is not None:
                r = self._ok(
                    self._run(f"nft list table {CORDON_TABLE}", operation="verify"), "verify"
                )
                ours = r.out
            facts = Facts(
                device=self.target.name,
                platform=self.target.device.platform,
                via=self.via,
                interfaces=ifs,
                ours=ours,
            )
            wrong = mismatches(facts, expect, config=ours)
            present = rules is not None
            if expect.table_present is not None and present != expect.table_present:
                wrong.append(
                    f"table {CORDON_TABLE} {'present' if present else 'absent'}, expected "
                    f"{'present' if expect.table_present else 'absent'}"
                )
            if expect.rule_comments is not None:
                have = [r.comment or "" for r in rules.rules] if rules else []
                if sorted(have) != sorted(expect.rule_comments):
                    missing = sorted(expect.rule_comments - set(have))
                    extra = sorted(set(have) - expect.rule_comments)
                    dup = sorted({c for c in have if have.count(c) > 1})
                    wrong.append(
                        f"rules of table {CORDON_TABLE} differ: missing {missing}, "
                        f"unexpected {extra}, duplicated {dup}"
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
        commands = tuple(changes.commands)
        try:
            parse.check_nft_scope(commands, family=_FAMILY, table=_TABLE)
        except ValueError as exc:
            raise DeviceError(
                self.target.name,
                "apply",
                f"nft script refused before sending: {exc}",
                hint=f"the agent writes only to table {CORDON_TABLE}",
            ) from None
        script = "\n".join(commands) + "\n"
        t0 = time.monotonic()
        try:
            check = self._run("nft -c -f -", stdin=script, operation="apply")
            if check.rc != 0:
                raise CommandRejected(
                    self.target.name, "apply", "nft -c -f -", scrub(check.err or check.out)
                )
            load = self._run("nft -f -", stdin=script, operation="apply")
            if load.rc != 0:
                raise CommandRejected(
                    self.target.name, "apply", "nft -f -", scrub(load.err or load.out)
                )
        except DeviceError as exc:
            trail.change_failed(
                self.target, via=self.via, changes=changes, commands=commands, exc=exc, started=t0
            )
            raise
        output = scrub(load.out + load.err)
        return trail.change_applied(
            self.target, via=self.via, changes=changes, commands=commands, output=output, started=t0
        )

    # -- dead-man timer (native safety net: `revert`) ------------------------------------------

    def arm_revert(self, changes: ChangeSet, seconds: float) -> str:
        """Arm an on-device revert: unless `confirm`ed within `seconds`, the device loads
        `changes` by itself (a detached timer that survives the session). Checked with
        `nft -c` first. Returns a token for `confirm`."""
        return revert.arm(self.target, self._run, changes, seconds)

    def confirm(self, token: str) -> bool:
        """Disarm; True if disarmed in time, False if the revert already ran on the device."""
        return revert.confirm(self.target, self._run, token)

    # -- plumbing --------------------------------------------------------------------------------

    def _run(self, command: str, *, operation: str, stdin: str | None = None) -> Run:
        self.connect()
        assert self._shell is not None
        try:
            return self._shell.run(command, stdin=stdin, operation=operation)
        except DeviceError:
            # The shell's state is unknown: never reuse it, and never let queued input through.
            transport, self._transport, self._shell = self._transport, None, None
            abort(transport)
            raise

    def _ok(self, r: Run, operation: str) -> Run:
        if r.rc != 0:
            raise DeviceError(
                self.target.name,
                operation,
                f"`{r.command}` exited {r.rc}: {scrub(r.err or r.out).strip()[:300]}",
            )
        return r

    def _parse(self, operation: str, parser: Callable[[str], T], text: str) -> T:
        try:
            return parser(text)
        except ValueError as exc:
            raise DeviceError(
                self.target.name, operation, f"unexpected device output: {exc}"
            ) from None
