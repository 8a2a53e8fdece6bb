"""The incident record an auditor files: a summary first, then who did what, as text (terminal),
markdown, HTML (screen and print), CSV (the timeline) or JSON.

Imports the standard library, Jinja2 (the HTML template, autoescaped) and `agent.audit` reading
modules; never structlog, the engine or a device library. Reads records; writes nothing.

Selection: `--incident` takes the records from its declaration to its close (or the end of the
log), less those tagged with another incident (runs are not tagged with their incident in the
log: the window is what binds them); `--run` its records; `--since` a moment (see
`agent.audit.since`). They combine.

Clocks run from the `incident.declared` record: NIS2 early warning +24 h, NIS2 notification
+72 h, NIS2 final report one calendar month after the notification (NIS2 art. 23(4)(d); until it
is made: one month after its 72 h deadline), CNIL +72 h, ARS "without delay" (due at once). A
clock is met by the first `regulatory.notified` record of the incident with the matching `kind`,
at the time the notification was made (`notified_at`, else the record's time).
"""

from __future__ import annotations

import calendar
import csv
import difflib
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2

from agent.audit import evidence, human
from agent.audit.chain import record_hash
from agent.audit.facts import (
    ConfigChange,
    Notification,
    RunFacts,
    SiteFacts,
    Summary,
    summarize,
    time_of,
)
from agent.audit.since import parse_moment
from agent.audit.source import ChainRead, ChainSource, file_records
from agent.audit.verify import Verification
from agent.errors import AuditError

__all__ = ["CLOCKS", "FORMATS", "Cited", "Report", "build", "cite", "parse_time", "render"]

FORMATS = ("text", "md", "html", "csv", "json")
# kind, label, rule shown, delay (None: calendar month after the notification; 0: without delay)
CLOCKS: tuple[tuple[str, str, str, timedelta | None], ...] = (
    ("ars", "ARS (regional health agency) report", "without delay", timedelta(0)),
    ("nis2_early_warning", "NIS2 early warning", "24 h", timedelta(hours=24)),
    ("nis2_notification", "NIS2 incident notification", "72 h", timedelta(hours=72)),
    ("cnil", "CNIL personal-data breach notification", "72 h", timedelta(hours=72)),
    ("nis2_final_report", "NIS2 final report", "1 month after the notification", None),
)
# fields shown elsewhere in a timeline line, or plumbing
_NOT_DETAIL = frozenset(
    {
        "ts",
        "seq",
        "event",
        "actor",
        "role",
        "site",
        "device",
        "action",
        "outcome",
        "prev",
        "hash",
        "file",
        "host",
        "pid",
        "level",
        "run_id",
        "incident_id",
        "duration_s",
        "commands",
        "writer",  # a PostgreSQL chain's plumbing (the node that appended), as host and pid
        "writer_epoch",
    }
)
_DETAIL_MAX = 300
_DIFF_MAX = 400  # diff lines shown per device; the rest is in the evidence store
_TEXT_WIDTH = 110  # a table wider than this is written a block per row
_BACKTICKS = re.compile(r"`+")  # a code fence longer than any run inside it


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """A moment as `--since` reads it (see `agent.audit.since`); `ConfigError` when it is none."""
    return parse_moment(text, now=now or datetime.now(UTC))


def add_month(moment: datetime) -> datetime:
    """The same time one calendar month later (31 Jan -> 28/29 Feb)."""
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _show(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Clock:
    kind: str
    label: str
    rule: str
    due: datetime
    notified_at: datetime | None
    status: str  # met | late | pending | overdue; without delay (ARS): due | notified
    note: str
    reference: str | None = None
    to: str | None = None
    seqs: tuple[int, ...] = ()  # the declaration, and the notification that met it


@dataclass(frozen=True)
class Cited:
    """A record a fact of the report cites, as the log holds it: its hash in the chain, and
    whether its content still hashes to it (a record edited in place does not)."""

    seq: int
    ts: str
    event: str
    hash: str | None
    intact: bool


def cite(seqs: Any) -> str:
    """`[seq 1, 4-6, 9]`: the records a fact comes from (runs of three or more as a range)."""
    ordered = sorted({int(x) for x in seqs if x})
    if not ordered:
        return "[no record]"
    parts: list[str] = []
    start = prev = ordered[0]
    for x in [*ordered[1:], None]:
        if x is not None and x == prev + 1:
            prev = x
            continue
        parts.append(
            str(start)
            if start == prev
            else f"{start}, {prev}"
            if prev == start + 1
            else f"{start}-{prev}"
        )
        if x is not None:
            start = prev = x
    return f"[seq {', '.join(parts)}]"


@dataclass(frozen=True)
class Incident:
    incident_id: str
    declared_at: datetime | None
    declared_by: str | None
    role: str | None
    site: str | None
    closed_at: datetime | None
    clocks: list[Clock]
    name: str | None = None
    reason: str | None = None
    declared_seq: int | None = None
    notifications: list[Notification] = field(default_factory=list)
    closed_seq: int | None = None


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
    duration: str = ""
    commands: tuple[str, ...] = ()
    commands_as_seq: int | None = None  # the same commands were shown at this seq

    @property
    def when(self) -> str:
        return self.ts[11:19] if len(self.ts) >= 19 else self.ts

    @property
    def day(self) -> str:
        return self.ts[:10]

    @property
    def who(self) -> str:
        return f"{self.actor} ({self.role})" if self.role else self.actor


@dataclass(frozen=True)
class Chain:
    """What proves the record: the verification of the whole log and its head."""

    verdict: str  # ok | unsealed | torn | broken | not verified
    ok: bool
    summary: str
    head_seq: int | None = None
    head_hash: str | None = None
    head_where: str | None = None
    seals: int = 0
    anchored: bool = False
    key: str | None = None


@dataclass(frozen=True)
class ConfigDiff:
    """A device's configuration before and after a run, as the evidence store holds them: the
    unified diff of the two blobs, or what keeps it from being shown (a blob missing or altered,
    an after snapshot not taken). Nothing here is read from anywhere but the store."""

    change: ConfigChange
    diff: tuple[str, ...] = ()  # unified diff lines (no line ends)
    more: int = 0  # diff lines not shown
    same: bool = False  # both snapshots are the same blob, or hold the same text
    problems: tuple[str, ...] = ()  # why no diff is shown

    @property
    def title(self) -> str:
        c = self.change
        where = f" ({c.site})" if c.site else ""
        when = (
            f"after the run ended {c.run_outcome}"
            if c.run_outcome
            else "after the run"
            if c.after_seq is not None
            else "no after snapshot in the selection"
        )
        return f"{c.device}{where}, run {c.run_id}, {when}"

    @property
    def before(self) -> str:
        c = self.change
        if c.before_sha256 is None:
            return "no config.before record for this run and device"
        return f"sha256 {c.before_sha256} [seq {c.before_seq}]"

    @property
    def after(self) -> str:
        c = self.change
        if c.after_sha256 is not None:
            return f"sha256 {c.after_sha256} [seq {c.after_seq}]"
        if c.error is not None:
            return f"NOT TAKEN: {c.error} [seq {c.after_seq}]"
        return "none recorded"

    @property
    def verdict(self) -> str:
        if self.problems:
            return "no diff shown: " + "; ".join(self.problems)
        if self.same:
            return "no difference: the configuration after is the one before"
        return ""


@dataclass
class Report:
    selection: str
    generated_at: datetime
    integrity: str
    integrity_ok: bool
    incidents: list[Incident] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)
    chain: Chain = field(default_factory=lambda: Chain("not verified", False, "not verified"))
    log_dir: str = ""
    configs: list[ConfigDiff] = field(default_factory=list)
    cited: list[Cited] = field(default_factory=list)  # every record a fact cites, by seq
    # where the configurations' blobs are (the files' evidence directory, or a database table)
    evidence_where: str = f"{evidence.EVIDENCE_DIR}/<sha256> under the log directory"
    in_database: bool = False  # the chain read is the group's, in PostgreSQL

    @property
    def altered(self) -> list[Cited]:
        return [c for c in self.cited if not c.intact]

    def as_dict(self) -> dict[str, Any]:
        def conv(value: Any) -> Any:
            if isinstance(value, datetime):
                return _show(value)
            if isinstance(value, timedelta):
                return value.total_seconds()
            if isinstance(value, dict):
                return {k: conv(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [conv(v) for v in value]
            return value

        return {
            "selection": self.selection,
            "generated_at": _show(self.generated_at),
            "log_dir": self.log_dir,
            "integrity": {"ok": self.integrity_ok, "summary": self.integrity},
            "chain": asdict(self.chain),
            "summary": conv(asdict(self.summary)),
            "incidents": [conv(asdict(i)) for i in self.incidents],
            "configs": [asdict(c) for c in self.configs],
            "cited": [asdict(c) for c in self.cited],
            "timeline": [asdict(r) for r in self.rows],
        }


def read_records(log_dir: Path) -> list[dict[str, Any]]:
    """Every readable record of the log in chain order (verification reports the unreadable)."""
    return file_records(log_dir)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "; ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items())
    return str(value)


def _row(record: dict[str, Any], shown: dict[tuple[str, str], tuple[tuple[str, ...], int]]) -> Row:
    details = []
    for key in sorted(record):
        if key in _NOT_DETAIL or record[key] in (None, "", []):
            continue
        value = record[key]
        if key.endswith("_sha256") and isinstance(value, str):
            value = f"sha256:{value[:16]}…"
        details.append(f"{key}={_text(value)}")
    detail = ", ".join(details)
    raw = record.get("commands")
    commands = tuple(str(c) for c in raw) if isinstance(raw, list) else ()
    seq = int(record.get("seq", 0))
    same: int | None = None
    if commands:
        where = (str(record.get("run_id") or ""), str(record.get("device") or ""))
        before = shown.get(where)
        if before is not None and before[0] == commands:
            same = before[1]
        else:
            shown[where] = (commands, seq)
    dur = record.get("duration_s")
    return Row(
        ts=_show(time_of(record)),
        seq=seq,
        event=str(record["event"]),
        actor=_text(record.get("actor")),
        role=_text(record.get("role")),
        site=_text(record.get("site")),
        device=_text(record.get("device")),
        action=_text(record.get("action")),
        outcome=_text(record.get("outcome")),
        incident_id=_text(record.get("incident_id")),
        run_id=_text(record.get("run_id")),
        detail=detail if len(detail) <= _DETAIL_MAX else detail[: _DETAIL_MAX - 1] + "…",
        duration=human.duration(dur) if isinstance(dur, int | float) else "",
        commands=commands if same is None else (),
        commands_as_seq=same,
    )


def _clock(
    *,
    kind: str,
    label: str,
    rule: str,
    delay: timedelta | None,
    declared: datetime,
    declared_seq: int,
    notes: dict[str, Notification],
    now: datetime,
) -> Clock:
    made = notes.get(kind)
    if delay is None:
        base = notes.get("nis2_notification")
        due = add_month(base.at if base is not None and base.at else declared + timedelta(hours=72))
    else:
        due = declared + delay
    notified = made.at if made is not None else None
    at_once = delay == timedelta(0)  # "without delay": no deadline to count down to
    if notified is not None:
        status = "notified" if at_once else "met" if notified <= due else "late"
        gap = notified - declared
        note = (
            f"notified {human.span(gap)} after declaration"
            if gap >= timedelta(0)
            else f"notified {human.span(-gap)} before declaration"
        )
    elif at_once:
        status = "due"
        note = f"due now: not yet notified ({human.span(now - declared)} since the declaration)"
    elif now > due:
        status = "overdue"
        note = f"not notified, {human.span(now - due)} past due"
    else:
        status = "pending"
        note = f"{human.span(due - now)} left"
    base_seq = (
        (notes["nis2_notification"].seq,) if delay is None and "nis2_notification" in notes else ()
    )
    return Clock(
        kind,
        label,
        rule,
        due,
        notified,
        status,
        note,
        reference=made.ref if made else None,
        to=made.to if made else None,
        seqs=(declared_seq, *base_seq, *((made.seq,) if made else ())),
    )


def _notification(record: dict[str, Any]) -> Notification:
    recorded = time_of(record)
    made = time_of(record, "notified_at") if record.get("notified_at") else None
    return Notification(
        kind=str(record.get("kind")),
        to=_text(record.get("to")) or None,
        ref=_text(record.get("ref")) or None,
        at=made or recorded,
        recorded_at=recorded,
        by=_text(record.get("notified_by")) or None,
        recorded_by=_text(record.get("actor")) or None,
        seq=int(record.get("seq", 0)),
    )


def _incident(
    incident_id: str,
    declared: dict[str, Any] | None,
    closed: dict[str, Any] | None,
    notified: list[Notification],
    now: datetime,
) -> Incident:
    declared_at = time_of(declared) if declared else None
    declared_seq = int(declared.get("seq", 0)) if declared else 0
    first: dict[str, Notification] = {}
    for note in notified:
        first.setdefault(note.kind, note)
    clocks = (
        [
            _clock(
                kind=kind,
                label=label,
                rule=rule,
                delay=delay,
                declared=declared_at,
                declared_seq=declared_seq,
                notes=first,
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
        closed_at=time_of(closed) if closed else None,
        clocks=clocks,
        name=_text(declared.get("name")) or None if declared else None,
        reason=_text(declared.get("reason")) or None if declared else None,
        declared_seq=declared_seq or None,
        notifications=notified,
        closed_seq=int(closed.get("seq", 0)) if closed else None,
    )


Blobs = Callable[[str], tuple[bytes | None, str | None]]


def _blob(blobs: Blobs, digest: str, which: str) -> tuple[list[str] | None, str | None]:
    """A snapshot's lines from the evidence store, or why it cannot be shown (never guessed)."""
    data, problem = blobs(digest)
    if data is None:
        return None, f"the {which} snapshot sha256 {digest[:16]}… {problem}"
    return data.decode("utf-8", errors="replace").splitlines(), None


def config_diff(where: Path | ChainSource | Blobs, change: ConfigChange) -> ConfigDiff:
    """The diff of `change`'s two snapshots as the store holds them (`audit verify` reports a
    blob missing or altered too; the report says it and shows no content). `where`: the chain
    (its evidence store), or its blobs as `ChainRead.blob` reads them."""
    if change.before_sha256 is None or change.after_sha256 is None:
        return ConfigDiff(change)
    if not callable(where):
        with ChainSource.of(where).open() as read:
            return config_diff(read.blob, change)
    blobs = where
    before, bad_before = _blob(blobs, change.before_sha256, "before")
    after, bad_after = _blob(blobs, change.after_sha256, "after")
    if before is None or after is None:
        problems = tuple(p for p in (bad_before, bad_after) if p)
        return ConfigDiff(change, problems=(*problems, "`cordon audit verify` reports it"))
    if before == after:
        return ConfigDiff(change, same=True)
    lines = list(
        difflib.unified_diff(
            before,
            after,
            fromfile=f"before sha256:{change.before_sha256[:16]}",
            tofile=f"after sha256:{change.after_sha256[:16]}",
            lineterm="",
        )
    )
    return ConfigDiff(change, diff=tuple(lines[:_DIFF_MAX]), more=max(0, len(lines) - _DIFF_MAX))


def _chain(integrity: Verification | None) -> Chain:
    if integrity is None:
        return Chain("not verified", False, "not verified")
    if not integrity.ok:
        summary = (
            f"CHAIN BROKEN: {integrity.findings[0]} ({len(integrity.findings)} finding(s)): "
            "this record cannot be relied on"
        )
        return Chain("broken", False, summary, seals=integrity.seals)
    notes = [
        f"the last write was cut at {integrity.torn.split(': ', 1)[0]}" if integrity.torn else "",
        f"{integrity.unsealed} record(s) not sealed yet" if integrity.unsealed else "",
        "seals signed and checked"
        if integrity.anchored
        else "seals NOT anchored (no public key pinned)",
    ]
    summary = (
        f"chain verified: {integrity.records} records, seq {integrity.first_seq}.."
        f"{integrity.head_seq}, {integrity.seals} seal(s); " + "; ".join(n for n in notes if n)
    )
    return Chain(
        integrity.verdict,
        True,
        summary,
        head_seq=integrity.head_seq,
        head_hash=integrity.head_hash,
        head_where=integrity.head_where,
        seals=integrity.seals,
        anchored=integrity.anchored,
        key=integrity.key,
    )


def _selected(
    record: dict[str, Any],
    *,
    incident: str | None,
    window: tuple[datetime | None, datetime | None],
    run: str | None,
    since: datetime | None,
) -> bool:
    """In the selection: the incident's own records, and untagged ones within its window (from
    its declaration to its close); the run's; those at or after `since`."""
    iid, moment = record.get("incident_id"), time_of(record)
    if incident is not None and iid != incident:
        start, end = window
        if isinstance(iid, str) and iid:
            return False  # another incident's
        if start is None or moment is None or moment < start or (end and moment > end):
            return False
    if run is not None and record.get("run_id") != run:
        return False
    return since is None or (moment is not None and moment >= since)


def build(
    where: Path | str | ChainSource | ChainRead,
    *,
    incident: str | None = None,
    run: str | None = None,
    since: datetime | None = None,
    now: datetime | None = None,
    integrity: Verification | None = None,
) -> Report:
    """Select records by incident, run and/or time and assemble the report (clocks at `now`).
    `where`: a log directory, or the group's chain in PostgreSQL (a URL or a `ChainSource`);
    the records and the evidence are read once from it (a database: in one snapshot), or
    what was read already (`ChainRead`, whose own `integrity` is used when none is given).
    Evidence blobs are read by sha256 for the configuration section only."""
    if incident is None and run is None and since is None:
        raise AuditError("a report needs --incident, --run or --since")
    if not isinstance(where, ChainRead):
        with ChainSource.of(where).open() as read:
            return build(
                read, incident=incident, run=run, since=since, now=now, integrity=integrity
            )
    chain_read = where
    if integrity is None:
        integrity = chain_read.integrity
    now = now or datetime.now(UTC)
    records = chain_read.records
    declared: dict[str, dict[str, Any]] = {}
    closed: dict[str, dict[str, Any]] = {}
    notified: dict[str, list[Notification]] = {}
    for record in records:
        iid, event, moment = record.get("incident_id"), record["event"], time_of(record)
        if not isinstance(iid, str) or moment is None:
            continue
        if event == "incident.declared":
            declared.setdefault(iid, record)
        elif event == "incident.closed":
            closed.setdefault(iid, record)
        elif event == "regulatory.notified" and isinstance(record.get("kind"), str):
            notified.setdefault(iid, []).append(_notification(record))
    if incident is not None and incident not in declared:  # its name, as `incident open` gave it
        named = [i for i, r in declared.items() if r.get("name") == incident]
        incident = named[-1] if named else incident
    window: tuple[datetime | None, datetime | None] = (None, None)
    if incident is not None and incident in declared:
        end = closed.get(incident)
        window = (time_of(declared[incident]), time_of(end) if end else None)
    selected = [
        r for r in records if _selected(r, incident=incident, window=window, run=run, since=since)
    ]
    seen_incidents: list[str] = [incident] if incident else []
    for record in selected:
        iid = record.get("incident_id")
        if isinstance(iid, str) and iid and iid not in seen_incidents:
            seen_incidents.append(iid)
    parts = [
        f"{name} {value}"
        for name, value in (("incident", incident), ("run", run), ("since", _show(since)))
        if value not in (None, "-")
    ]
    chain = _chain(integrity)
    incidents = [
        _incident(i, declared.get(i), closed.get(i), notified.get(i, []), now)
        for i in seen_incidents
    ]
    first_declared = next((i.declared_at for i in incidents if i.declared_at), None)
    shown: dict[tuple[str, str], tuple[tuple[str, ...], int]] = {}
    first_seq = next((i.declared_seq for i in incidents if i.declared_at), None)
    summary = summarize(selected, declared=first_declared, declared_seq=first_seq)
    configs = [config_diff(chain_read.blob, c) for c in summary.configs]
    report = Report(
        selection=", ".join(parts),
        generated_at=now,
        integrity=chain.summary,
        integrity_ok=chain.ok,
        incidents=incidents,
        rows=[_row(r, shown) for r in selected],
        summary=summary,
        chain=chain,
        log_dir=chain_read.label,
        configs=configs,
        evidence_where=chain_read.evidence_where,
        in_database=chain_read.in_database,
    )
    report.cited = _cited(records, _cited_seqs(report))
    return report


def _cited_seqs(report: Report) -> set[int]:
    """Every seq a fact of the summary, the clocks or the configurations cites."""
    s = report.summary
    out: set[int] = set()
    for inc in report.incidents:
        out |= {x for x in (inc.declared_seq, inc.closed_seq) if x}
        for clock in inc.clocks:
            out |= set(clock.seqs)
    for run in s.runs:
        out |= set(run.seqs)
    for site in s.sites:
        out |= set(site.seqs)
    for line_seqs in s.degraded_seqs:
        out |= set(line_seqs)
    out |= {f.seq for f in s.flows} | set(s.flow_note_seqs)
    for diff in report.configs:
        out |= {x for x in (diff.change.before_seq, diff.change.after_seq) if x}
    for actor_seqs in s.people_seqs.values():
        out |= set(actor_seqs)
    out.discard(0)
    return out


def _cited(records: list[dict[str, Any]], seqs: set[int]) -> list[Cited]:
    """The cited records as the log holds them, each checked against its own hash."""
    out: list[Cited] = []
    for rec in records:
        seq = rec.get("seq")
        if not isinstance(seq, int) or seq not in seqs:
            continue
        digest = rec.get("hash")
        body = {k: v for k, v in rec.items() if k != "hash"}
        intact = isinstance(digest, str) and record_hash(body) == digest
        out.append(
            Cited(seq, _show(time_of(rec)), str(rec["event"]), _text(digest) or None, intact)
        )
    return out


# -- rendering --------------------------------------------------------------------------------

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters["moment"] = human.moment
TEMPLATES.filters["span"] = human.span
TEMPLATES.filters["duration"] = human.duration


def _md_cell(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    return escaped.replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True)
class _Form:
    """Markdown (headings, tables) or terminal text (underlined titles, aligned columns)."""

    md: bool

    def cell(self, text: str) -> str:
        return _md_cell(text) if self.md else text

    def head(self, title: str, level: int = 2) -> Iterator[str]:
        yield ""
        if self.md:
            yield "#" * level + " " + title
            yield ""
        else:
            yield title.upper() if level == 2 else title
            yield ("=" if level == 2 else "-") * len(title)

    def table(self, header: list[str], rows: list[list[str]]) -> Iterator[str]:
        if self.md:
            yield "| " + " | ".join(header) + " |"
            yield "|" + "---|" * len(header)
            for r in rows:
                yield "| " + " | ".join(self.cell(c) for c in r) + " |"
            return
        widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
        if sum(widths) + 2 * len(widths) > _TEXT_WIDTH:  # too wide for a terminal: a block a row
            for r in rows:
                yield f"  {r[0]}"
                yield from (f"      {h}: {c}" for h, c in zip(header[1:], r[1:], strict=True) if c)
            return
        for r in [header, *rows]:
            yield "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()


def _head_lines(report: Report, form: _Form) -> Iterator[str]:
    s = report.summary
    yield ("# " if form.md else "") + "Cordon incident record"
    yield ""
    yield f"Selection: {report.selection}  (log {report.log_dir})"
    yield f"Generated: {human.moment(report.generated_at)}"
    mark = "**" if form.md and not report.chain.ok else ""
    yield f"Integrity: {mark}{report.chain.summary}{mark}"
    if report.altered:
        bold = "**" if form.md else ""
        yield (
            f"{bold}ALTERED RECORDS: {len(report.altered)} record(s) a fact cites no longer "
            f"match their own hash, {cite(c.seq for c in report.altered)}: the facts that cite "
            f"them cannot be relied on{bold}"
        )
    if report.chain.head_hash:
        yield f"Chain head: seq {report.chain.head_seq} {report.chain.head_hash}"
    yield (
        f"Records: {s.records}, seq {s.first_seq}..{s.last_seq}, "
        f"{human.moment(s.first_at)} to {human.moment(s.last_at)}"
        if s.records
        else "Records: none selected"
    )


def _incident_line(inc: Incident) -> str:
    if inc.declared_at is None:
        return f"- Incident {inc.incident_id}: no incident.declared record, clocks unknown"
    return (
        f"- Incident {inc.incident_id} ({inc.name or 'no name recorded'}): declared "
        f"{human.moment(inc.declared_at)} by {inc.declared_by or 'unknown'}"
        f"{f' ({inc.role})' if inc.role else ''}, site {inc.site or 'unknown'}: "
        f"{inc.reason or 'no reason recorded'}; "
        + (f"closed {human.moment(inc.closed_at)}" if inc.closed_at else "not closed")
        + f" {cite([inc.declared_seq, inc.closed_seq])}"
    )


def _run_line(run: RunFacts) -> str:
    who = f"{run.actor} ({run.role})" if run.role else run.actor or "unknown"
    return (
        f"- Run {run.run_id}: {run.playbook or 'unknown playbook'} on "
        f"{', '.join(run.sites) or 'no site recorded'}, level {run.level or 'not recorded'}, "
        f"started {human.moment(run.started_at)} by {who}"
        + (f", reason: {run.reason}" if run.reason else "")
        + (f", BREAK-GLASS: {run.break_glass}" if run.break_glass else "")
        + (f", approved by {', '.join(run.approved_by)}" if run.approved_by else "")
        + f"; {run.changes} device change(s); ended {run.outcome or 'not yet'}"
        + (f" in {human.duration(run.duration_s)}" if run.duration_s is not None else "")
        + f" {cite(run.seqs)}"
    )


def _site_cells(site: SiteFacts) -> list[str]:
    return [
        site.site,
        ", ".join(f"{r.playbook} {r.run_id} ({r.outcome or 'open'})" for r in site.runs),
        human.moment(site.contained_at),
        f"{human.span(site.time_to_contain)} from the {site.contain_from}"
        if site.time_to_contain is not None
        else f"unknown: {site.contain_note}",
        site.state,
        cite(site.seqs),
    ]


def _clock_cells(c: Clock) -> list[str]:
    return [
        c.label,
        c.rule,
        _clock_due(c),
        _clock_status(c),
        human.moment(c.notified_at) if c.notified_at else "-",
        f"{c.to or '-'} / {c.reference or '-'}",
        c.note,
        cite(c.seqs),
    ]


def _clock_due(c: Clock) -> str:
    """When a clock is due: a time, or for "without delay" at once from the declaration."""
    if c.status in ("due", "notified"):
        return f"at once from the declaration ({human.moment(c.due)})"
    return human.moment(c.due)


def _clock_status(c: Clock) -> str:
    return "DUE NOW" if c.status == "due" else c.status.upper()


def _clock_line(c: Clock) -> str:
    """One line a clock, for the terminal."""
    made = (
        f"notified {human.moment(c.notified_at)} to {c.to or '?'}, ref {c.reference or '?'} "
        f"({c.note})"
        if c.notified_at
        else c.note
    )
    return f"{_clock_status(c):<8} {c.label}: due {_clock_due(c)} ({c.rule}); {made} {cite(c.seqs)}"


def _summary_lines(report: Report, form: _Form) -> Iterator[str]:
    s = report.summary
    yield from form.head("Summary")
    yield from (form.cell(_incident_line(i)) for i in report.incidents)
    if not report.incidents:
        yield "- No incident in the selection (no incident.declared record)."
    yield from (form.cell(_run_line(r)) for r in s.runs)
    yield from form.head("Sites", 3)
    site_head = ["Site", "Runs", "Contained", "Time to contain", "Now (per the log)", "Records"]
    rows = [_site_cells(site) for site in s.sites]
    yield from form.table(site_head, rows or [["(no run in the selection)", "", "", "", "", ""]])
    yield from form.head("Still degraded", 3)
    for line, seqs in zip(s.still_degraded, s.degraded_seqs, strict=True):
        yield f"- {form.cell(line)} {cite(seqs)}"
    if not s.still_degraded:
        yield "- nothing the log records as degraded"
    for inc in (i for i in report.incidents if i.clocks):
        yield from form.head(f"Regulatory clocks ({inc.incident_id})", 3)
        clock_head = [
            "Obligation",
            "Rule",
            "Due",
            "Status",
            "Notified",
            "To / reference",
            "Note",
            "Records",
        ]
        if form.md:
            yield from form.table(clock_head, [_clock_cells(c) for c in inc.clocks])
        else:
            yield from (f"  {_clock_line(c)}" for c in inc.clocks)
    yield from form.head("Flow verification", 3)
    if not s.flows:
        yield s.flow_note + (f" {cite(s.flow_note_seqs)}" if s.flow_note_seqs else "")
        return
    yield from form.table(
        ["Flow", "Expected", "Result", "How", "When", "Record"],
        [
            [f.flow, f.expected or "-", f.status.upper(), f.how, human.moment(f.at), cite([f.seq])]
            for f in s.flows
        ],
    )


def _fence(lines: Iterator[str] | tuple[str, ...]) -> str:
    """A markdown code fence longer than any run of backticks inside the block."""
    found = _BACKTICKS.findall("\n".join(lines))
    return "`" * max(3, 1 + max((len(run) for run in found), default=0))


def _config_lines(report: Report, form: _Form) -> Iterator[str]:
    yield from form.head("Configuration changes")
    if not report.configs:
        yield "no configuration snapshot (config.before, config.after) in the selected records"
        return
    yield (
        "Per device a run changed: its configuration before the run and after it, as the "
        f"evidence store holds them ({report.evidence_where})."
    )
    for c in report.configs:
        yield from form.head(c.title, 3)
        yield f"- before: {form.cell(c.before)}"
        yield f"- after: {form.cell(c.after)}"
        if c.verdict:
            yield f"- {form.cell(c.verdict)}"
        if not c.diff:
            continue
        if form.md:
            fence = _fence(c.diff)
            yield ""
            yield from (f"{fence}diff", *c.diff, fence)
        else:
            yield from (f"    {line}".rstrip() for line in c.diff)
        if c.more:
            yield f"- ({c.more} more diff lines: compare the two blobs in the evidence store)"


def _row_lines(row: Row, form: _Form) -> Iterator[str]:
    what = " ".join(
        x
        for x in (
            row.event,
            row.site,
            row.device,
            row.action,
            row.outcome and f"-> {row.outcome}",
            row.duration and f"({row.duration})",
        )
        if x
    )
    by = f" by {row.who}" if row.actor else ""
    run = f" [run {row.run_id}]" if row.run_id else ""
    indent = "  " if form.md else "      "
    yield f"{'- ' if form.md else '  '}{row.when} #{row.seq} {form.cell(what + by)}{run}"
    if row.detail:
        yield f"{indent}{form.cell(row.detail)}"
    if row.commands_as_seq is not None:
        yield f"{indent}commands: as at #{row.commands_as_seq}"
    elif row.commands and form.md:
        fence = "`" * max(
            3, 1 + max(len(run) for run in _BACKTICKS.findall("".join(row.commands)) or [""])
        )
        yield from (f"  {fence}", *(f"  {c}" for c in row.commands), f"  {fence}")
    else:
        yield from (f"{indent}> {c}" for c in row.commands)


def _timeline_lines(report: Report, form: _Form) -> Iterator[str]:
    yield from form.head("Timeline")
    day = ""
    for row in report.rows:
        if row.day != day:
            day = row.day
            yield f"{'### ' if form.md else ''}{day} (UTC)"
            if form.md:
                yield ""
        yield from _row_lines(row, form)
    yield from form.head("Who did what", 3)
    for actor, events in sorted(report.summary.people.items()):
        seqs = report.summary.people_seqs.get(actor, [])
        yield f"- {form.cell(actor)}: {', '.join(events)} {cite(seqs)}"


def _cited_lines(report: Report, form: _Form) -> Iterator[str]:
    yield from form.head("Records cited")
    yield (
        "Each [seq N] above names a record of the audit chain; here is its hash as the chain "
        "holds it (`cordon audit verify` proves the chain up to the head above)."
    )
    if not report.cited:
        yield "no record cited"
        return
    if not form.md:  # a line a record: the hash is too wide for a table
        yield ""
        for c in report.cited:
            flag = "" if c.intact else "  ALTERED: its content no longer hashes to it"
            yield f"  #{c.seq:<5} {c.ts[:19]}  {c.event:<20} sha256 {c.hash or '-'}{flag}"
        return
    yield from form.table(
        ["Seq", "Time", "Event", "sha256", "Content"],
        [
            [str(c.seq), c.ts, c.event, c.hash or "-", "ok" if c.intact else "ALTERED"]
            for c in report.cited
        ],
    )


def _lines(report: Report, *, md: bool) -> Iterator[str]:
    form = _Form(md)
    yield from _head_lines(report, form)
    yield from _summary_lines(report, form)
    yield from _config_lines(report, form)
    yield from _timeline_lines(report, form)
    yield from _cited_lines(report, form)


def render_text(report: Report) -> str:
    return "\n".join(_lines(report, md=False)) + "\n"


def render_md(report: Report) -> str:
    return "\n".join(_lines(report, md=True)) + "\n"


TEMPLATES.globals["clock_due"] = _clock_due
TEMPLATES.globals["clock_status"] = _clock_status


def render_html(report: Report) -> str:
    """One page for the screen that prints well (print stylesheet inline; no remote asset)."""
    return TEMPLATES.get_template("report.html.j2").render(r=report, s=report.summary) + "\n"


def render_csv(report: Report) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    names = [n for n in Row.__dataclass_fields__ if n != "commands_as_seq"]
    writer.writerow(names)
    for row in report.rows:
        cells = [
            _text(list(v)) if isinstance(v := getattr(row, n), tuple) else str(v) for n in names
        ]
        writer.writerow([_csv_safe(c) for c in cells])
    return buf.getvalue()


def _csv_safe(text: str) -> str:
    """Keep spreadsheet programs from running a cell as a formula (CSV injection)."""
    risky = len(text) > 1 and text[0] in "=+-@\t\r"
    return f"'{text}" if risky else text


def render(report: Report, fmt: str) -> str:
    """The report as `text`, `md`, `html`, `csv` (timeline rows only) or `json`."""
    if fmt == "text":
        return render_text(report)
    if fmt == "md":
        return render_md(report)
    if fmt == "html":
        return render_html(report)
    if fmt == "csv":
        return render_csv(report)
    if fmt == "json":
        return json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n"
    raise AuditError(f"unknown report format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
