"""Reports: selection, sections, regulatory clocks from the declaration, and the four formats."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.audit.chain import ChainWriter
from agent.audit.evidence import store
from agent.audit.report import add_month, build, parse_time, render
from agent.audit.seals import seal_head
from agent.audit.verify import verify
from agent.errors import AuditError, ConfigError

DECLARED = datetime(2024, 10, 15, 3, 0, tzinfo=UTC)


class Clock:
    """A settable clock for the writer."""

    def __init__(self) -> None:
        self.now = DECLARED

    def __call__(self) -> datetime:
        return self.now


Append = Callable[..., None]


@pytest.fixture
def incident_log(log_dir: Path) -> Path:
    """An incident with a run, approvals, break-glass, changes, a drift alarm and notifications."""
    clock = Clock()
    writer = ChainWriter(log_dir, clock=clock)

    def at(minutes: float, event: str, **fields: Any) -> None:
        clock.now = DECLARED + timedelta(minutes=minutes)
        writer.append({"event": event, "incident_id": "inc-1", **fields})

    at(0, "incident.declared", actor="dr.martin", role="crisis_lead", site="rennes")
    at(5, "regulatory.notified", kind="ars", actor="dr.martin")
    at(10, "run.planned", run_id="r-1", actor="ops", playbook="contain-l1")
    at(12, "run.approved", run_id="r-1", actor="dr.martin", role="crisis_lead")
    at(13, "run.break_glass", run_id="r-1", actor="ops", reason="approver unreachable")
    at(
        15,
        "device.change",
        run_id="r-1",
        device="fw-1",
        action="wan.cut",
        outcome="ok",
        config_before_sha256=store(b"hostname fw-1\n", log_dir=log_dir),
        commands=["=cmd|' /C calc'!A0"],
    )
    at(16, "device.change", run_id="r-1", device="sw-1", action="port.shutdown", outcome="ok")
    at(17, "device.verify", run_id="r-1", device="fw-1", outcome="ok")
    at(60 * 20, "regulatory.notified", kind="nis2_early_warning", actor="dsi")
    at(60 * 80, "regulatory.notified", kind="cnil", actor="dpo")
    at(60 * 90, "drift.alarm", device="sw-1", detail="port back up <script>", actor="=1+2")
    at(60 * 100, "reconnect.attested", run_id="r-2", site="nantes", actor="dsi")
    writer.append({"event": "device.change", "incident_id": "inc-other", "device": "x"})
    seal_head(writer, reason="test")
    return log_dir


def _clocks(report_dict: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["kind"]: c for c in report_dict["incidents"][0]["clocks"]}


def test_clocks_count_from_the_declaration(incident_log: Path) -> None:
    """Due times are declaration +24 h, +72 h, +72 h, +1 month, and at once for the ARS."""
    now = DECLARED + timedelta(hours=30)
    clocks = _clocks(build(incident_log, incident="inc-1", now=now).as_dict())
    assert clocks["ars"]["due"] == "2024-10-15T03:00:00+00:00"
    assert clocks["nis2_early_warning"]["due"] == "2024-10-16T03:00:00+00:00"
    assert clocks["nis2_notification"]["due"] == "2024-10-18T03:00:00+00:00"
    assert clocks["cnil"]["due"] == "2024-10-18T03:00:00+00:00"
    # NIS2 art. 23(4)(d): a month after the notification; not made yet: after its deadline
    assert clocks["nis2_final_report"]["due"] == "2024-11-18T03:00:00+00:00"


def test_clock_status_met_late_pending_overdue(incident_log: Path) -> None:
    """Notified in time is met, after the due time late; not notified is pending, then overdue."""
    early = _clocks(
        build(incident_log, incident="inc-1", now=DECLARED + timedelta(hours=30)).as_dict()
    )
    assert early["ars"]["status"] == "notified"  # without delay: notified, no deadline to meet
    assert early["nis2_early_warning"]["status"] == "met"
    assert early["cnil"]["status"] == "late"
    assert early["nis2_notification"]["status"] == "pending"
    late = _clocks(
        build(incident_log, incident="inc-1", now=DECLARED + timedelta(days=40)).as_dict()
    )
    assert late["nis2_notification"]["status"] == "overdue"
    assert late["nis2_final_report"]["status"] == "overdue"


def test_declaration_names_who_declared(incident_log: Path) -> None:
    """The incident block says when and by whom (with role) the incident was declared."""
    incident = build(incident_log, incident="inc-1").incidents[0]
    assert (incident.declared_at, incident.declared_by, incident.role) == (
        DECLARED,
        "dr.martin",
        "crisis_lead",
    )


def test_month_is_a_calendar_month() -> None:
    """One month after 31 January is the last day of February."""
    assert add_month(datetime(2024, 1, 31, 9, tzinfo=UTC)) == datetime(2024, 2, 29, 9, tzinfo=UTC)
    assert add_month(datetime(2024, 12, 15, tzinfo=UTC)) == datetime(2025, 1, 15, tzinfo=UTC)


def test_selection_by_incident_run_and_time(incident_log: Path) -> None:
    """--incident, --run and --since each keep only their records."""
    assert len(build(incident_log, incident="inc-1").rows) == 12
    assert {r.run_id for r in build(incident_log, run="r-1").rows} == {"r-1"}
    assert len(build(incident_log, run="r-1").rows) == 6
    since = build(incident_log, since=DECLARED + timedelta(hours=20))
    assert [r.event for r in since.rows][:2] == ["regulatory.notified", "regulatory.notified"]


def test_run_report_shows_the_clocks_of_its_incident(incident_log: Path) -> None:
    """A report by run still computes the clocks of the incident the run belongs to."""
    report = build(incident_log, run="r-1")
    assert [i.incident_id for i in report.incidents] == ["inc-1"]
    assert report.incidents[0].clocks


def test_a_selection_is_required(incident_log: Path) -> None:
    """Without incident, run or since, building a report raises AuditError."""
    with pytest.raises(AuditError):
        build(incident_log)


def test_markdown_has_the_sections(incident_log: Path) -> None:
    """The markdown report: summary, sites, degraded, clocks, flows, timeline, who did what."""
    text = render(build(incident_log, incident="inc-1", integrity=verify(incident_log)), "md")
    for heading in (
        "## Summary",
        "### Sites",
        "### Still degraded",
        "### Regulatory clocks (inc-1)",
        "### Flow verification",
        "## Timeline",
        "### Who did what",
    ):
        assert heading in text
    assert "chain verified: 13 records" in text
    assert (
        "| NIS2 early warning | 24 h | 2024-10-16 03:00:00 UTC | MET | 2024-10-15 23:00:00 UTC |"
        in text
    )


def test_html_escapes_logged_text(incident_log: Path) -> None:
    """Text from the log cannot inject markup into the HTML report."""
    text = render(build(incident_log, incident="inc-1"), "html")
    assert "<script>" not in text
    assert "&lt;script&gt;" in text


def test_markdown_escapes_markup_and_keeps_commands_verbatim(incident_log: Path) -> None:
    """Logged text cannot smuggle HTML into the markdown; commands stay verbatim in a fence."""
    text = render(build(incident_log, incident="inc-1"), "md")
    assert "<script>" not in text
    assert "port back up &lt;script&gt;" in text
    assert "  ```\n  =cmd|' /C calc'!A0\n  ```" in text


def test_csv_rows_cannot_run_formulas(incident_log: Path) -> None:
    """CSV has one row per record and neutralises cells that a spreadsheet would evaluate."""
    text = render(build(incident_log, incident="inc-1"), "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 12
    assert not any(value.startswith("=") for row in rows for value in row.values())
    assert [row["actor"] for row in rows if row["event"] == "drift.alarm"] == ["'=1+2"]


def test_json_report_round_trips(incident_log: Path) -> None:
    """The JSON report parses and reports integrity, incidents and the timeline."""
    data = json.loads(
        render(build(incident_log, incident="inc-1", integrity=verify(incident_log)), "json")
    )
    assert data["integrity"]["ok"] is True
    assert data["incidents"][0]["declared_by"] == "dr.martin"
    assert len(data["timeline"]) == 12


def test_broken_chain_is_flagged_in_the_report(incident_log: Path) -> None:
    """A report on a tampered log says so at the top."""
    path = incident_log / "audit-2024-10-15.jsonl"
    text = path.read_text()
    assert '"actor":"ops"' in text
    path.write_text(text.replace('"actor":"ops"', '"actor":"nobody"', 1))
    text = render(build(incident_log, incident="inc-1", integrity=verify(incident_log)), "md")
    assert "**CHAIN BROKEN:" in text


def test_naive_times_are_utc() -> None:
    """A --since without a zone is read as UTC; nonsense is invalid input (exit 2)."""
    assert parse_time("2024-10-15T03:00") == DECLARED
    with pytest.raises(ConfigError) as info:
        parse_time("last tuesdy")
    assert info.value.exit_code == 2
