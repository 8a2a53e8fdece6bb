"""`cordon status` as text: every site's mode, drift alarms, open runs and what each waits for,
open incidents, the last drift poll, the must-survive flows' health (each one's last verification:
status, the sources that confirmed or contradicted it, when) and (several daemons on one
database) the nodes.

Imports the wire models, `agent.status` and `agent.cli.render` helpers only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.cli.options import Opts
from agent.cli.render import style, when
from agent.status import RunStatus, SiteMode
from agent.wire import RunSummary

if TYPE_CHECKING:  # annotations only: `cordon run` does not create these classes (#18)
    from agent.wire.reports import ClusterInfo, FlowHealth, StatusOut

__all__ = ["render_status", "waiting_text"]


def _mode_color(mode: str) -> str:
    colors: dict[str, str] = {
        SiteMode.NORMAL: "green",
        SiteMode.ISOLATED: "yellow",
        SiteMode.RECONNECTED: "cyan",
    }
    return colors.get(mode, "magenta")


def render_status(o: Opts, data: StatusOut) -> str:
    sites = data.sites
    width = max([len(s.site) for s in sites] + [4]) + 2
    lines = [f"{'SITE':<{width}}{'MODE':<14}{'LEVEL':<7}{'SINCE':<24}{'BY':<12}RUN"]
    for s in sites:
        mode = str(s.mode)
        row = (
            f"{s.site:<{width}}"
            + style(o, f"{mode:<14}", fg=_mode_color(mode))
            + f"{s.level or '-':<7}{when(s.since) if s.since else '-':<24}"
            + f"{s.by or '-':<12}{s.run_id or '-'}"
        )
        if s.locked_by and s.locked_by != s.run_id:
            row += f"  held by run {s.locked_by}"
        elif s.locked_by:
            row += "  (held)"
        if s.drift:
            row += "  " + style(o, f"DRIFT x{len(s.drift)}", fg="red", bold=True)
        lines.append(row)
    lines += _alarms(o, data)
    runs = data.open_runs
    lines.append("")
    if runs:
        lines.append(f"open runs ({len(runs)}):")
        for r in runs:
            lines.append(
                f"  {r.run_id}  {r.playbook}  by {r.actor}  on {', '.join(r.sites)}"
                f"  steps {r.steps_done}/{r.steps_total}"
            )
            lines.append(f"      {waiting_text(r)}")
    else:
        lines.append("no open run")
    incidents = data.incidents
    if incidents:
        lines.append(f"open incidents ({len(incidents)}):")
        for i in incidents:
            lines.append(
                f"  {i.incident_id}  {i.name}"
                + (f" at {i.site}" if i.site else "")
                + f"  opened {when(i.opened_at)} by {i.opened_by}: {i.reason}"
            )
    poll = data.last_poll
    if poll is not None:
        counts = ", ".join(f"{k} {v}" for k, v in (poll.counts or {}).items())
        lines.append(f"last drift poll: {when(poll.at)}: {counts}")
    lines += render_flow_health(o, data.flows)
    lines.extend(_nodes(o, data.cluster))
    return "\n".join(lines)


_FLOW_ORDER = {"failed": 0, "unverified": 1, None: 2, "passed": 3}
_FLOW_COLOR = {"failed": "red", "unverified": "yellow", None: "yellow", "passed": "green"}


def render_flow_health(o: Opts, flows: list[FlowHealth]) -> list[str]:
    """Every must-survive flow's last verification, the failed first, then the unverified and
    those never checked (neither is ever shown as passed)."""
    if not flows:
        return []
    count = {k: sum(f.status == k for f in flows) for k in ("passed", "failed", "unverified")}
    never = sum(f.status is None for f in flows)
    head = (
        f"must-survive flows ({len(flows)}): {count['passed']} passed, {count['failed']} failed, "
        f"{count['unverified']} unverified, {never} never checked"
    )
    bad = count["failed"] > 0
    lines = ["", style(o, head, fg="red" if bad else None, bold=bad)]
    width = max(len(f.flow) for f in flows)
    for f in sorted(flows, key=lambda f: (_FLOW_ORDER.get(f.status, 2), f.flow)):
        status = f.status or "never checked"
        if f.status == "failed":
            how = "contradicted by " + ", ".join(f.contradicted_by)
        elif f.status == "passed":
            how = "confirmed by " + ", ".join(f.confirmed_by)
        elif f.status == "unverified":
            how = "no source could check it"
        else:
            how = "no verify step has checked it"
        at = f"  {when(f.at)} ({f.step}, run {f.run_id})" if f.at is not None else ""
        lines.append(
            f"  {f.flow:<{width}}  "
            + style(o, f"{status:<13}", fg=_FLOW_COLOR.get(f.status))
            + f"  expected {f.expected or '-'}: {how}{at}"
        )
    return lines


def _nodes(o: Opts, c: ClusterInfo | None) -> list[str]:
    """Several daemons on one database: this node's role, the lease, every node seen."""
    if c is None:
        return []
    role = style(o, c.role.upper(), fg="green" if c.role == "active" else "yellow", bold=True)
    holder = f"{c.holder} (epoch {c.epoch})" if c.holder else f"nobody now (epoch {c.epoch})"
    taken = (
        f"last takeover {when(c.last_takeover_at)}"
        + (f" from {c.taken_from}" if c.taken_from else "")
        if c.last_takeover_at is not None
        else "no takeover yet"
    )
    lines = ["", f"this node {c.this_node}: {role}; active: {holder}; {taken}"]
    for n in c.nodes:
        seen = "-" if n.seen_s_ago is None else f"{float(n.seen_s_ago):.1f} s ago"
        epoch = "-" if n.epoch is None else str(n.epoch)
        lines.append(f"  {n.node:<24}{n.role:<9}epoch {epoch:<6}pid {n.pid or '-':<8}seen {seen}")
    return lines


def waiting_text(r: RunSummary) -> str:
    """What an open run waits for, or that nobody drives it any more (and what to do)."""
    if r.interrupted:
        pid = r.driver_pid
        was = f" (its process {pid} is gone)" if pid else ""
        return (
            f"INTERRUPTED: no process drives it{was}; `cordon resume {r.run_id}` "
            "settles it and goes on (or start the daemon: it takes it on)"
        )
    if r.stop_requested:
        return f"stopping: {r.stop_requested}"
    if r.status == RunStatus.AWAITING_APPROVAL:
        what = r.waiting or "approval by a second operator"
        return f"waits for: {what} (`cordon approve {r.run_id}`)"
    if r.waiting:
        return f"waits for: {r.waiting}"
    return "working"


def _alarms(o: Opts, data: StatusOut) -> list[str]:
    """Open alarms: drift, and (apart) must-survive flows whose kept rules stopped counting."""
    stopped = [a for a in data.drift_alarms if a.kind == "traffic_stopped"]
    alarms = [a for a in data.drift_alarms if a.kind != "traffic_stopped"]
    lines: list[str] = []
    for found, head in (
        (alarms, "DRIFT: {n} open alarm(s): a device no longer shows what Cordon did"),
        (stopped, "TRAFFIC STOPPED: {n} must-survive flow(s) no longer carry traffic"),
    ):
        if not found:
            continue
        lines.append("")
        lines.append(style(o, head.format(n=len(found)), fg="red", bold=True))
        for a in found:
            lines.append(
                style(o, f"  {a.site}  {a.device}: {a.detail}", fg="red")
                + f"  (since {when(a.first_seen)})"
            )
    return lines
