"""The exercise report a CaRE / HAS auditor files: objectives, the people, the timeline of
decisions and actions (from the drill's own audit log, as `cordon audit report` reads it), time
to contain each site, time to reconnect each site and zone set, must-survive flow availability
measured during the exercise, deviations from the plan, and the audit chain's head with its
verification. Text for the terminal; HTML for the screen that prints (inline print stylesheet).

Imports the audit package's report and facts (reused, not re-derived) and Jinja2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jinja2

from agent import audit
from agent.audit import human
from agent.audit import report as audit_report
from agent.audit.facts import SiteFacts, summarize, time_of
from agent.drill.exercise import FlowAvailability, Outcome, StepResult

__all__ = ["ExerciseReport", "build", "render_html", "render_text", "write"]

RECONNECT = "reconnect"  # the playbook whose runs reconnect a site


@dataclass(frozen=True)
class Reconnection:
    site: str
    started_at: datetime | None
    done_at: datetime | None  # the reconnect run that ended done
    zones: list[tuple[str, timedelta]]  # soak step passed, after the first reconnect start

    @property
    def time(self) -> timedelta | None:
        if self.started_at is None or self.done_at is None:
            return None
        return self.done_at - self.started_at


@dataclass
class ExerciseReport:
    outcome: Outcome
    declared_at: datetime | None  # the exercise's attack: the first step's start
    sites: list[SiteFacts]
    reconnections: list[Reconnection]
    rows: list[audit_report.Row]
    chain: audit_report.Chain
    people: dict[str, list[str]]
    deviations: list[str] = field(default_factory=list)
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def steps(self) -> list[StepResult]:
        return self.outcome.steps

    @property
    def flows(self) -> list[FlowAvailability]:
        return self.outcome.flows


def build(outcome: Outcome) -> ExerciseReport:
    log_dir = outcome.log_dir
    integrity = audit.verify(log_dir)
    base = audit_report.build(log_dir, since=outcome.started_at, integrity=integrity)
    records = [
        r
        for r in audit_report.read_records(log_dir)
        if (t := time_of(r)) is not None and t >= outcome.started_at
    ]
    declared = next((s.started_at for s in outcome.steps if s.started_at), None)
    facts = summarize(records, declared=declared)
    rec = ExerciseReport(
        outcome=outcome,
        declared_at=declared,
        sites=facts.sites,
        reconnections=_reconnections(outcome.steps, records),
        rows=base.rows,
        chain=base.chain,
        people=facts.people,
    )
    rec.deviations = _deviations(rec)
    return rec


def _reconnections(steps: list[StepResult], records: list[dict[str, object]]) -> list[Reconnection]:
    out = []
    sites = sorted({s for st in steps if st.playbook == RECONNECT for s in st.sites})
    for site in sites:
        mine = [st for st in steps if st.playbook == RECONNECT and site in st.sites]
        start = next((st.started_at for st in mine if st.started_at), None)
        done = next((st.finished_at for st in mine if st.status == "done"), None)
        runs = {st.run_id for st in mine}
        zones = []
        for r in records:
            at = time_of(r)
            if r.get("event") == "soak.passed" and r.get("run_id") in runs and at and start:
                zones.append((str(r.get("step", "?")).removeprefix("soak-"), at - start))
        out.append(Reconnection(site, start, done, zones))
    return out


def _deviations(rec: ExerciseReport) -> list[str]:
    out = []
    o = rec.outcome
    if o.error:
        out.append(f"the drill stopped: {o.error}")
    for st in o.steps:
        if st.status != st.expected:
            why = f" ({st.note})" if st.note else ""
            out.append(f"step {st.name} ({st.playbook}): {st.status}, planned {st.expected}{why}")
        out += [f"step {st.name}: flow check: {p}" for p in st.flow_problems]
    done = {st.name for st in o.steps}
    out += [f"step {s.name} not played" for s in o.scenario.steps if s.name not in done]
    for f in o.flows:
        if not f.sent:
            out.append(f"must-survive flow {f.flow}: no probe was sent (availability unknown)")
        if f.failed:
            out.append(
                f"must-survive flow {f.flow}: {f.failed} of {f.sent} probes failed, worst outage "
                f"{human.duration(f.worst_outage_s)}; first failure "
                f"{human.moment(f.first_failure_at)}: {f.first_failure}"
            )
    if not o.flows:
        out.append("no must-survive flow was probed (the inventory declares none)")
    if not rec.chain.ok:
        out.append(f"the audit chain does not verify: {rec.chain.summary}")
    return out


# -- rendering --------------------------------------------------------------------------------

_TEMPLATES = jinja2.Environment(
    loader=jinja2.ChoiceLoader(
        [
            jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
            jinja2.FileSystemLoader(Path(audit_report.__file__).with_name("templates")),
        ]
    ),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_TEMPLATES.filters["moment"] = human.moment
_TEMPLATES.filters["span"] = human.span
_TEMPLATES.filters["duration"] = human.duration


def render_html(rec: ExerciseReport) -> str:
    return _TEMPLATES.get_template("exercise.html.j2").render(e=rec, sc=rec.outcome.scenario) + "\n"


def render_text(rec: ExerciseReport) -> str:
    o, sc = rec.outcome, rec.outcome.scenario
    lines = [
        f"Cyber-crisis exercise record: {sc.title or sc.name} ({sc.name})",
        f"Played {human.moment(o.started_at)} to {human.moment(o.finished_at)} on a digital twin "
        f"of {o.inventory} (sandbox copy {o.sandbox}, its addresses mapped back to the group's "
        f"in {Path(o.sandbox).with_name('renumbering.txt')}); no production device was touched.",
        f"Site hit: {sc.hit}",
        "",
        "Objectives",
        *(f"  - {t}" for t in sc.objectives),
        "",
        "Roles",
        *(
            f"  {role:<16} {name}"
            for role in ("on_call", "second_operator", "it", "auditor")
            if (name := sc.roles.of(role))
        ),
        "",
        "Steps (plan and outcome)",
    ]
    for st in rec.steps:
        took = (
            human.span(st.finished_at - st.started_at) if st.started_at and st.finished_at else ""
        )
        lines.append(
            f"  {human.moment(st.started_at)}  {st.name}: {st.playbook} on {', '.join(st.sites)}"
            f" by {st.actor}"
            + (f", approved by {st.approver}" if st.approver else "")
            + f"; {st.status} (planned {st.expected})"
            + (f" in {took}" if took else "")
            + (f", run {st.run_id}" if st.run_id else "")
            + (f": {st.note}" if st.note else "")
        )
    lines += ["", "Injects", *(f"  - {t}" for t in o.injects or ["none"])]
    lines += ["", "Time to contain (from the attack's declaration: the first step's start)"]
    for site in rec.sites:
        ttc = human.span(site.time_to_contain) if site.time_to_contain else site.contain_note
        lines.append(f"  {site.site:<34} {ttc or 'not contained'}")
    lines += ["", "Time to reconnect (from the first reconnect step's start)"]
    for rc in rec.reconnections:
        total = human.span(rc.time) if rc.time else "not reconnected"
        lines.append(f"  {rc.site:<34} {total}")
        lines += [f"    {zone:<20} healthy after {human.span(at)}" for zone, at in rc.zones]
    lines += ["", "Must-survive flow availability during the exercise (probe every 200 ms)"]
    for f in rec.flows:
        lines.append(
            f"  {f.flow:<34} no probe sent"
            if f.percent is None
            else f"  {f.flow:<34} {f.percent:6.2f} %  ({f.sent - f.failed}/{f.sent} probes), "
            f"worst outage {human.duration(f.worst_outage_s)}"
        )
    lines += ["", "Deviations from the plan", *(f"  - {d}" for d in rec.deviations or ["none"])]
    lines += ["", "Who did what", *(f"  {a}: {', '.join(e)}" for a, e in rec.people.items())]
    lines += ["", f"Timeline ({len(rec.rows)} audit records)"]
    for row in rec.rows:
        detail = f" {row.detail}" if row.detail else ""
        lines.append(
            f"  {row.when} {row.who or '-'} {row.event} {row.site or ''} {row.device or ''}"
            f" {row.outcome or ''}{detail}".rstrip()
        )
    lines += ["", "Audit chain", f"  {rec.chain.summary}"]
    if rec.chain.head_hash:
        lines.append(f"  head: seq {rec.chain.head_seq} {rec.chain.head_hash}")
    lines.append(f"  log: {o.log_dir} (verify with `cordon audit verify {o.log_dir}`)")
    return "\n".join(lines) + "\n"


def write(rec: ExerciseReport, out: Path) -> list[Path]:
    paths = [out / "exercise-report.txt", out / "exercise-report.html"]
    paths[0].write_text(render_text(rec))
    paths[1].write_text(render_html(rec))
    return paths
