"""Owns the juniper_srx driver: the Junos NETCONF driver (same pinned session, candidate
transaction checked by its commit, `commit confirmed` dead-man) whose packet rules are SRX
security policies. A change reads the candidate configuration, maps the interfaces Cordon names
to the device's own security zones and expands the plan's zone-free lines (`srx_render.expand`),
deletes every CORDON- policy, address and application, loads the wanted ones with the `insert`s
that put them before the site's policies, and commits; then it reads the committed configuration
back and refuses (DeviceError) unless it holds exactly the statements sent with Cordon's
policies first in every zone pair. When the change adds deny policies it then clears the flow
sessions they cut (`srx_sessions`: sessions opened before a cut would go on, an SRX looks
policies up for a session's first packet only). Counters are policy hit counts
(`<get-security-policies-hit-count/>`).
Imports the Junos driver and this folder's SRX renderer and parser."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from agent.drivers import trail
from agent.drivers.base import ApplyResult, ChangeSet
from agent.errors import DeviceError
from agent.platforms.juniper_junos import parse, srx_parse, srx_render, srx_sessions
from agent.platforms.juniper_junos.driver import JunosDriver, kind_of

_HIT_COUNT = "<get-security-policies-hit-count/>"


def srx_kind_of(lines: Sequence[str]) -> str:
    """`policies` (Cordon's whole policy set; an empty one removes it) or `disable`; ValueError
    naming the first line that is neither, or a mix."""
    bad = parse.lines_valid(lines)
    if bad:
        raise ValueError(f"line {bad[0]!r} holds a control character")
    policy = []
    for ln in lines:
        try:
            srx_render.check_line(ln)
        except ValueError:
            continue
        policy.append(ln)
    if not policy:
        kind = kind_of(lines)  # interface disable lines (refuses anything else)
        if kind != "disable" and lines:
            raise ValueError(f"line {lines[0]!r} is a filter line: an SRX gets security policies")
        return "disable" if lines else "policies"
    if len(policy) != len(lines):
        other = next(ln for ln in lines if ln not in policy)
        srx_render.check_line(other)  # raises, naming the line
    return "policies"


class SrxDriver(JunosDriver):
    """A Junos SRX over NETCONF: Cordon's objects are its CORDON- security policies, global
    address-book entries and applications."""

    _home = f"{srx_render.PREFIX} security policies"
    _checked_kinds = frozenset({"policies"})

    def _kind(self, lines: Sequence[str]) -> str:
        return srx_kind_of(lines)

    def _ours(self, config: str) -> str:
        return srx_parse.ours(config)

    def _names_listed(self, ours: str) -> list[str]:
        return srx_parse.names_listed(ours)

    def _converge(self, candidate: str, lines: list[str]) -> list[str]:
        try:
            zones = srx_parse.zones(candidate)
            rest = _without_ours(candidate)
            wanted = srx_render.expand(lines, zones, srx_parse.first_site(rest))
        except ValueError as exc:
            raise DeviceError(
                self.target.name,
                "apply",
                f"security policies not sent: {exc}",
                hint="read the device's `security zones` configuration; nothing was changed",
            ) from None
        return srx_parse.delete_lines(srx_parse.ours(candidate)) + wanted

    def _check_committed(self, kind: str, sent: Sequence[str], committed: str) -> None:
        if kind != "policies":
            return
        want = {ln for ln in sent if ln.startswith("set ")}
        have = set(srx_parse.ours(committed).splitlines())
        wrong = []
        if want != have:
            wrong.append(f"missing {sorted(want - have)[:5]}, unexpected {sorted(have - want)[:5]}")
        late = srx_parse.misplaced(committed)
        if late:
            wrong.append(f"a site policy comes before Cordon's in {', '.join(late)}")
        if wrong:
            raise DeviceError(
                self.target.name,
                "apply",
                "the committed security policies are not the ones sent: " + "; ".join(wrong),
            )

    def _differs(self, config: str, lines: Sequence[str], kind: str) -> str:
        if kind != "policies":
            return super()._differs(config, lines, kind)
        want = frozenset(srx_render.shown(ln) for ln in lines)
        have = srx_parse.names_in(srx_parse.ours(config))
        if want == have:
            return ""
        return f"missing {sorted(want - have)}, unexpected {sorted(have - want)}"

    def apply(self, changes: ChangeSet) -> ApplyResult:
        """The Junos transaction (commit, read back), then, when it adds deny policies, the
        clearing of the sessions they cut (`srx_sessions`), journaled as its own change."""
        lines = [c.strip() for c in changes.commands if c.strip()]
        clear = srx_sessions.Clear(prefixes=())
        if lines and self._kind_or_none(lines) == "policies":
            before = srx_parse.ours(self.committed("apply"))
            interfaces = {i.name: i.address for i in self.target.device.interfaces}
            try:
                clear = srx_sessions.plan(lines, before, interfaces)
            except ValueError as exc:
                raise DeviceError(
                    self.target.name, "apply", f"change set refused before sending: {exc}"
                ) from None
        done = super().apply(changes)
        if not clear.prefixes:
            return done
        t0 = time.monotonic()
        action = ChangeSet(tuple(c for _, c in clear.rpcs()), action="sessions.clear")
        sent: list[str] = []
        try:
            for rpc, command in clear.rpcs():
                sent.append(command)
                self._rpc(rpc, "apply", command=command)
        except DeviceError as exc:
            exc.hint = (
                "the new policies ARE committed; sessions opened before them from or to the "
                "prefixes not yet cleared go on until they end"
            )
            trail.change_failed(
                self.target, via=self.via, changes=action, commands=sent, exc=exc, started=t0
            )
            raise
        trail.change_applied(
            self.target,
            via=self.via,
            changes=action,
            commands=sent,
            output=clear.summary(),
            started=t0,
        )
        return dataclasses.replace(
            done,
            commands=(*done.commands, *sent),
            output="\n".join(x for x in (done.output, clear.summary()) if x),
            duration_s=done.duration_s + time.monotonic() - t0,
        )

    def _kind_or_none(self, lines: Sequence[str]) -> str | None:
        try:
            return self._kind(lines)
        except ValueError:
            return None  # the transaction refuses it, naming the line

    def rule_counters(self) -> dict[str, int]:
        """Sessions matched by Cordon's policies (hit counts), keyed `CORDON-r<id>` (a count
        rule's policies and a policy's zone pairs summed); {} when it has none."""
        reply = self._rpc(_HIT_COUNT, "counters")
        return self._parse("counters", srx_parse.hit_counts, reply)


def _without_ours(config: str) -> str:
    mine = set(srx_parse.ours(config).splitlines())
    return "\n".join(ln for ln in config.splitlines() if ln.strip() not in mine) + "\n"
