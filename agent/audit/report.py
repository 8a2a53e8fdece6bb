"""Timelines for investigators and regulators, with the regulatory clocks, as md/html/csv/json.

Imports only the standard library and `agent.audit` reading modules; never structlog, the engine
or a device library. Reads records; writes nothing.

Clocks run from the `incident.declared` record: NIS2 early warning +24 h, NIS2 notification
+72 h, NIS2 final report +1 calendar month, CNIL +72 h, ARS "without delay" (due at once). A
clock is met by the first `regulatory.notified` record of the incident with the matching `kind`.
"""

from __future__ import annotations

import calendar
import csv
import html
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.audit.chain import audit_files, iter_lines
from agent.audit.verify import Verification
from agent.errors import AuditError

__all__ = ["CLOCKS", "FORMATS", "Report", "build", "parse_time", "render"]

FORMATS = ("md", "html", "csv", "json")
# kind, label, rule shown, delay (None: calendar month; timedelta(0): without delay)
CLOCKS: tuple[tuple[str, str, str, timedelta | None], ...] = (
    ("ars", "ARS (regional health agency) report", "without delay", timedelta(0)),
    ("nis2_early_warning", "NIS2 early warning", "24 h", timedelta(hours=24)),
    ("nis2_notification", "NIS2 incident notification", "72 h", timedelta(hours=72)),
    ("cnil", "CNIL personal-data breach notification", "72 h", timedelta(hours=72)),
    ("nis2_final_report", "NIS2 final report", "1 month", None),
)
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Declaration and decisions", ("incident.declared", "run.planned", "incident.closed")),
    ("Approvals", ("run.approved",)),
    ("Break-glass uses", ("run.break_glass",)),
    ("Verifications", ("device.verify",)),
    # every flow's verdict per verify step: passed, failed or UNVERIFIED (no source could tell)
    ("Flow verifications", ("flow.checked",)),
    ("Reconnection attestations", ("reconnect.attested",)),
    ("Drift alarms", ("drift.alarm",)),
    ("Refused access", ("access.refused",)),
    ("Failed steps", ("step.failed",)),
    ("Regulatory notifications", ("regulatory.notified",)),
)
_COLUMNS = ("ts", "seq", "event", "actor", "role", "site", "device", "action", "outcome")
_NOT_DETAIL = frozenset(
    {
        *_COLUMNS,
        "prev",
        "hash",
        "file",
        "host",
        "pid",
        "level",
        "run_id",
        "incident_id",
        "duration_s",
    }
)


def parse_time(text: str) -> datetime:
    """An ISO-8601 time; without a zone it is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise AuditError(
            f"{text!r} is not an ISO-8601 time", hint="e.g. 2024-10-15T03:00:00+02:00"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def add_month(moment: datetime) -> datetime:
    """The same time one calendar month later (31 Jan -> 28/29 Feb)."""
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _show(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


def _span(delta: timedelta) -> str:
    minutes = int(abs(delta.total_seconds()) // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    return (f"{days} d " if days else "") + f"{hours} h {mins:02d} min"


@dataclass(frozen=True)
class Clock:
    kind: str
    label: str
    rule: str
    due: datetime
    notified_at: datetime | None
    status: str  # met | late | pending | overdue
    note: str


@dataclass(frozen=True)
class Incident:
    incident_id: str
    declared_at: datetime | None
    declared_by: str | None
    role: str | None
    site: str | None
    closed_at: datetime | None
    clocks: list[Clock]


@dataclass(frozen=True)
class Row:
    ts: str
    seq: int
    event: str
    actor: str
    role: str
    site: str
    device: str
    action: str
    outcome: str
    incident_id: str
    run_id: str
    detail: str


@dataclass
class Report:
    selection: str
    generated_at: datetime
    integrity: str
    integrity_ok: bool
    incidents: list[Incident] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    def section(self, events: tuple[str, ...]) -> list[Row]:
        return [r for r in self.rows if r.event in events]

    def changes_by_device(self) -> dict[str, list[Row]]:
        out: dict[str, list[Row]] = {}
        for row in self.rows:
            if row.event == "device.change":
                out.setdefault(row.device or "-", []).append(row)
        return dict(sorted(out.items()))

    def as_dict(self) -> dict[str, Any]:
        def conv(value: Any) -> Any:
            if isinstance(value, datetime):
                return _show(value)
            if isinstance(value, dict):
                return {k: conv(v) for k, v in value.items()}
            if isinstance(value, list):
                return [conv(v) for v in value]
            return value

        return {
            "selection": self.selection,
            "generated_at": _show(self.generated_at),
            "integrity": {"ok": self.integrity_ok, "summary": self.integrity},
            "incidents": [conv(asdict(i)) for i in self.incidents],
            "timeline": [asdict(r) for r in self.rows],
        }


def _records(log_dir: Path) -> Iterator[dict[str, Any]]:
    for _file, _line, raw in iter_lines(audit_files(log_dir)):
        try:
            record = json.loads(raw)
        except ValueError:
            continue  # verification reports it; a report shows what can be read
        if isinstance(record, dict) and isinstance(record.get("event"), str):
            yield record


def _time_of(record: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(record.get("ts")))
    except ValueError:
        return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "; ".join(_text(v) for v in value)
    return str(value)


def _row(record: dict[str, Any]) -> Row:
    details = []
    for key in sorted(record):
        if key in _NOT_DETAIL or record[key] in (None, "", []):
            continue
        value = record[key]
        if key.endswith("_sha256") and isinstance(value, str):
            value = f"sha256:{value[:16]}…"
        details.append(f"{key}={_text(value)}")
    if record.get("duration_s") is not None:
        details.append(f"duration={record['duration_s']}s")
    detail = ", ".join(details)
    return Row(
        ts=_show(_time_of(record)),
        seq=int(record.get("seq", 0)),
        event=str(record["event"]),
        actor=_text(record.get("actor")),
        role=_text(record.get("role")),
        site=_text(record.get("site")),
        device=_text(record.get("device")),
        action=_text(record.get("action")),
        outcome=_text(record.get("outcome")),
        incident_id=_text(record.get("incident_id")),
        run_id=_text(record.get("run_id")),
        detail=detail if len(detail) <= 400 else detail[:399] + "…",
    )


def _clock(
    *,
    kind: str,
    label: str,
    rule: str,
    delay: timedelta | None,
    declared: datetime,
    notified: datetime | None,
    now: datetime,
) -> Clock:
    due = add_month(declared) if delay is None else declared + delay
    if notified is not None:
        status = "met" if notified <= due or delay == timedelta(0) else "late"
        note = f"notified {_span(notified - declared)} after declaration"
    elif now > due:
        status = "overdue"
        note = f"not notified, {_span(now - due)} past due" if delay else "not notified"
    else:
        status = "pending"
        note = f"{_span(due - now)} left"
    return Clock(kind, label, rule, due, notified, status, note)


def _incident(
    incident_id: str,
    declared: dict[str, Any] | None,
    closed: datetime | None,
    notified: dict[str, datetime],
    now: datetime,
) -> Incident:
    declared_at = _time_of(declared) if declared else None
    clocks = (
        [
            _clock(
                kind=kind,
                label=label,
                rule=rule,
                delay=delay,
                declared=declared_at,
                notified=notified.get(kind),
                now=now,
            )
            for kind, label, rule, delay in CLOCKS
        ]
        if declared_at is not None
        else []
    )
    return Incident(
        incident_id=incident_id,
        declared_at=declared_at,
        declared_by=declared.get("actor") if declared else None,
        role=declared.get("role") if declared else None,
        site=declared.get("site") if declared else None,
        closed_at=closed,
        clocks=clocks,
    )


def build(
    log_dir: Path,
    *,
    incident: str | None = None,
    run: str | None = None,
    since: datetime | None = None,
    now: datetime | None = None,
    integrity: Verification | None = None,
) -> Report:
    """Select records by incident, run and/or time and assemble the report (clocks at `now`)."""
    if incident is None and run is None and since is None:
        raise AuditError("a report needs --incident, --run or --since")
    now = now or datetime.now(UTC)
    declared: dict[str, dict[str, Any]] = {}
    closed: dict[str, datetime] = {}
    notified: dict[str, dict[str, datetime]] = {}
    rows: list[Row] = []
    seen_incidents: list[str] = [incident] if incident else []
    for record in _records(log_dir):
        iid, event = record.get("incident_id"), record["event"]
        moment = _time_of(record)
        if isinstance(iid, str) and moment is not None:
            if event == "incident.declared":
                declared.setdefault(iid, record)
            elif event == "incident.closed":
                closed.setdefault(iid, moment)
            elif event == "regulatory.notified" and isinstance(record.get("kind"), str):
                notified.setdefault(iid, {}).setdefault(record["kind"], moment)
        if (
            (incident is not None and iid != incident)
            or (run is not None and record.get("run_id") != run)
            or (since is not None and (moment is None or moment < since))
        ):
            continue
        rows.append(_row(record))
        if isinstance(iid, str) and iid not in seen_incidents:
            seen_incidents.append(iid)
    parts = [
        f"{name} {value}"
        for name, value in (("incident", incident), ("run", run), ("since", _show(since)))
        if value not in (None, "-")
    ]
    if integrity is None:
        summary, ok = "not verified", False
    elif integrity.ok:
        notes = [
            f"the last write was cut at {integrity.torn.split(': ', 1)[0]}"
            if integrity.torn
            else "",
            f"{integrity.unsealed} record(s) not sealed yet" if integrity.unsealed else "",
            "seals signed and checked"
            if integrity.anchored
            else "seals NOT anchored (no public key pinned)",
        ]
        summary, ok = (
            f"chain verified: {integrity.records} records, seq {integrity.first_seq}.."
            f"{integrity.head_seq}, {integrity.seals} seal(s); " + "; ".join(n for n in notes if n),
            True,
        )
    else:
        summary, ok = (
            f"CHAIN BROKEN: {integrity.findings[0]} ({len(integrity.findings)} finding(s))",
            False,
        )
    return Report(
        selection=", ".join(parts),
        generated_at=now,
        integrity=summary,
        integrity_ok=ok,
        incidents=[
            _incident(i, declared.get(i), closed.get(i), notified.get(i, {}), now)
            for i in seen_incidents
        ],
        rows=rows,
    )


# -- rendering --------------------------------------------------------------------------------

_TIMELINE_HEAD = (
    "Time (UTC)",
    "Seq",
    "Event",
    "Actor (role)",
    "Run",
    "Site",
    "Device",
    "Action",
    "Outcome",
)


def _timeline_cells(row: Row) -> list[str]:
    who = f"{row.actor} ({row.role})" if row.role else row.actor
    return [
        row.ts,
        str(row.seq),
        row.event,
        who,
        row.run_id,
        row.site,
        row.device,
        row.action,
        row.outcome,
        row.detail,
    ]


def _blocks(report: Report) -> Iterator[tuple[str, list[str], list[list[str]]]]:
    """(heading, header, rows) tables shared by the markdown and HTML renderers."""
    for inc in report.incidents:
        head = f"Incident {inc.incident_id}"
        if inc.declared_at is None:
            yield head, ["Note"], [["no incident.declared record: clocks cannot be computed"]]
            continue
        who = f"{inc.declared_by} ({inc.role})" if inc.role else str(inc.declared_by)
        yield (
            head,
            ["Declared (UTC)", "By", "Site", "Closed (UTC)"],
            [[_show(inc.declared_at), who, inc.site or "", _show(inc.closed_at)]],
        )
        yield (
            f"Regulatory clocks for {inc.incident_id}",
            ["Obligation", "Rule", "Due (UTC)", "Status", "Notified (UTC)", "Note"],
            [
                [
                    c.label,
                    c.rule,
                    _show(c.due),
                    c.status.upper(),
                    _show(c.notified_at),
                    c.note,
                ]
                for c in inc.clocks
            ],
        )
    cells = [*_TIMELINE_HEAD, "Details"]
    for title, events in SECTIONS:
        rows = report.section(events)
        if rows:
            yield title, cells, [_timeline_cells(r) for r in rows]
    for device, rows in report.changes_by_device().items():
        yield f"Changes on {device}", cells, [_timeline_cells(r) for r in rows]
    yield "Timeline", cells, [_timeline_cells(r) for r in report.rows]


def _md_cell(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    return escaped.replace("<", "&lt;").replace(">", "&gt;")


def render_md(report: Report) -> str:
    out = [
        "# Cordon audit report",
        "",
        f"- Selection: {report.selection}",
        f"- Generated: {_show(report.generated_at)}",
        f"- Integrity: {'' if report.integrity_ok else '**'}{report.integrity}"
        f"{'' if report.integrity_ok else '**'}",
        f"- Records: {len(report.rows)}",
    ]
    for title, header, rows in _blocks(report):
        out += ["", f"## {title}", "", "| " + " | ".join(header) + " |"]
        out.append("|" + "---|" * len(header))
        out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def render_html(report: Report) -> str:
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Cordon audit report</title>',
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:2px 6px;vertical-align:top}"
        ".broken{color:#b00;font-weight:bold}</style></head><body>",
        "<h1>Cordon audit report</h1><ul>",
        f"<li>Selection: {esc(report.selection)}</li>",
        f"<li>Generated: {esc(_show(report.generated_at))}</li>",
        f'<li>Integrity: <span class="{"ok" if report.integrity_ok else "broken"}">'
        f"{esc(report.integrity)}</span></li>",
        f"<li>Records: {len(report.rows)}</li></ul>",
    ]
    for title, header, rows in _blocks(report):
        out.append(f"<h2>{esc(title)}</h2><table><tr>")
        out.append("".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        out += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows]
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render_csv(report: Report) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    names = list(Row.__dataclass_fields__)
    writer.writerow(names)
    for row in report.rows:
        writer.writerow([_csv_safe(str(getattr(row, n))) for n in names])
    return buf.getvalue()


def _csv_safe(text: str) -> str:
    """Keep spreadsheet programs from running a cell as a formula (CSV injection)."""
    risky = len(text) > 1 and text[0] in "=+-@\t\r"
    return f"'{text}" if risky else text


def render(report: Report, fmt: str) -> str:
    """The report as `md`, `html`, `csv` (timeline rows only) or `json`."""
    if fmt == "md":
        return render_md(report)
    if fmt == "html":
        return render_html(report)
    if fmt == "csv":
        return render_csv(report)
    if fmt == "json":
        return json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n"
    raise AuditError(f"unknown report format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
