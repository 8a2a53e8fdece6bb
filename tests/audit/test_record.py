"""The incident record and the regulators' drafts, on a log shaped like the demo's (records as the
run, the drivers and the service write them): summary, time to contain, still degraded, human
durations, commands once, `--since`, notifications meeting clocks, drafts, a tampered log."""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import agent.audit as audit
from agent.audit import drafts, human
from agent.audit.chain import ChainWriter
from agent.audit.report import build, render
from agent.audit.seals import seal_head
from agent.audit.since import parse_moment
from agent.audit.verify import verify
from agent.errors import ConfigError

T0 = datetime(2024, 10, 15, 3, 0, tzinfo=UTC)
ISOLATE, DEGRADE, RECONNECT = "r-isolate", "r-degrade", "r-reconnect"
COMMANDS = ["nft add table inet cordon", "nft add rule inet cordon fwd oifname wan0 drop"]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def crisis_log(log_dir: Path) -> Path:
    """An incident at rennes: declared, isolate-site there (L3 recorded), preventive-degraded on
    nantes (no level recorded, as today's run.started writes it), a reconnection of rennes that a
    soak re-isolated, the ARS notified, an uncleared drift alarm."""
    clock = Clock()
    writer = ChainWriter(log_dir, clock=clock)

    def at(seconds: float, event: str, **fields: Any) -> None:
        clock.now = T0 + timedelta(seconds=seconds)
        writer.append({"event": event, "level": "info", **fields})

    inc = {"incident_id": "INC-1"}
    at(
        0,
        "incident.declared",
        **inc,
        actor="dr.martin",
        role="operator",
        name="ransomware-rennes",
        site="rennes",
        reason="ransom note on the admin PCs",
    )
    at(
        60,
        "run.started",
        run_id=ISOLATE,
        actor="ops",
        playbook="isolate-site",
        sites=["rennes"],
        run_level="L3",
        reason="contain",
        outcome="running",
    )
    at(
        61,
        "step.started",
        run_id=ISOLATE,
        actor="ops",
        site="rennes",
        device="rns-fw1",
        action="nftables",
        step="cut-internet",
        commands=COMMANDS,
    )
    at(
        62,
        "device.change",
        run_id=ISOLATE,
        actor="ops",
        site="rennes",
        device="rns-fw1",
        action="cut-internet",
        commands=COMMANDS,
        outcome="ok",
        duration_s=0.3032,
    )
    at(
        62.5,
        "device.verify",
        run_id=ISOLATE,
        actor="ops",
        site="rennes",
        device="rns-fw1",
        action="cut-internet.verify",
        outcome="ok",
        duration_s=0.0027,
        polls=1,
        mismatches=[],
    )
    at(
        63,
        "step.succeeded",
        run_id=ISOLATE,
        actor="ops",
        site="rennes",
        device="rns-fw1",
        step="cut-internet",
        outcome="ok",
        duration_s=0.3088000960000272,
    )
    at(
        64.478554010391235,
        "run.finished",
        run_id=ISOLATE,
        actor="ops",
        outcome="done",
        duration_s=4.478554010391235,
        failed=0,
        flow_problems=0,
    )
    at(
        120,
        "run.started",
        run_id=DEGRADE,
        actor="ops",
        playbook="preventive-degraded",
        sites=["nantes"],
        outcome="running",
    )
    at(
        121,
        "step.started",
        run_id=DEGRADE,
        actor="ops",
        site="nantes",
        device="nts-fw1",
        action="nftables",
        step="cut-remote",
        commands=["nft flush chain inet cordon fwd"],
    )
    at(
        122,
        "device.change",
        run_id=DEGRADE,
        actor="ops",
        site="nantes",
        device="nts-fw1",
        action="cut-remote",
        commands=["nft flush chain inet cordon fwd"],
        outcome="ok",
        duration_s=0.25,
    )
    at(
        123,
        "step.succeeded",
        run_id=DEGRADE,
        actor="ops",
        site="nantes",
        device="nts-fw1",
        step="cut-remote",
        outcome="ok",
        duration_s=0.5,
    )
    at(
        124,
        "run.finished",
        run_id=DEGRADE,
        actor="ops",
        outcome="done",
        duration_s=4.0,
        failed=0,
        flow_problems=0,
    )
    at(
        300,
        "regulatory.notified",
        **inc,
        actor="ops",
        kind="ars",
        to="ARS",
        ref="PSIG-42",
        notified_at=(T0 + timedelta(seconds=240)).isoformat(),
        notified_by="directeur de garde",
    )
    at(
        3600,
        "run.started",
        run_id=RECONNECT,
        actor="ops",
        playbook="reconnect",
        sites=["rennes"],
        run_level="L0",
        outcome="running",
    )
    at(
        3700,
        "reconnect.reisolated",
        run_id=RECONNECT,
        actor="ops",
        site="rennes",
        step="soak-admin",
        zones=["admin"],
        outcome="re-isolated",
        reason="scan toward the core",
    )
    at(
        3725,
        "run.finished",
        run_id=RECONNECT,
        actor="ops",
        outcome="reisolated",
        duration_s=125.2,
        failed=0,
        flow_problems=1,
        detail="soak-admin: scan toward the core",
    )
    at(4000, "drift.alarm", actor="cordon", device="nts-sw1", detail="uplink back up <b>")
    seal_head(writer, reason="test")
    writer.close()
    return log_dir


def _report(log: Path, **kw: Any) -> Any:
    return build(log, incident="INC-1", integrity=verify(log), now=T0 + timedelta(hours=2), **kw)


# -- the summary ---------------------------------------------------------------------------------


def test_summary_says_what_happened_who_and_time_to_contain(crisis_log: Path) -> None:
    """Incident, runs (playbook, sites, level as recorded, by whom), per site the time to
    contain from the declaration to the last step verified there by the first run."""
    report = _report(crisis_log)
    text = render(report, "text")
    assert (
        "- Incident INC-1 (ransomware-rennes): declared 2024-10-15 03:00:00 UTC by dr.martin "
        "(operator), site rennes: ransom note on the admin PCs; not closed" in text
    )
    assert (
        "- Run r-isolate: isolate-site on rennes, level L3, started 2024-10-15 03:01:00 UTC by ops"
        in text
    )
    sites = {s.site: s for s in report.summary.sites}
    assert sites["rennes"].time_to_contain == timedelta(seconds=63)
    assert sites["rennes"].contain_from == "declaration"
    assert sites["nantes"].time_to_contain == timedelta(seconds=123)
    assert "1 min 03 s from the declaration" in text


def test_still_degraded_says_only_what_the_log_holds(crisis_log: Path) -> None:
    """A zone a soak re-isolated, a level not recorded (unknown, not "normal"), an uncleared
    drift alarm, a run that did not end done."""
    report = _report(crisis_log)
    degraded = report.summary.still_degraded
    assert degraded[0].startswith(
        "nantes: unknown (after preventive-degraded r-degrade (done); the log does not record "
        "the run's level"
    )
    assert degraded[1] == "rennes: reconnect r-reconnect: L0, reisolated; re-isolated: admin"
    assert (
        degraded[2]
        == "run r-reconnect (reconnect) ended reisolated: soak-admin: scan toward the core"
    )
    assert degraded[3] == "drift alarm on nts-sw1 not cleared: uplink back up <b>"
    # each line names the records it comes from: the runs' ends, the re-isolation, the alarm
    assert report.summary.degraded_seqs == [(8, 12), (14, 15, 16), (16,), (17,)]


def test_durations_are_rounded_for_a_person(crisis_log: Path) -> None:
    """No sixteen decimals anywhere in the text, markdown or HTML; the JSON keeps the value."""
    report = _report(crisis_log)
    for fmt in ("text", "md", "html"):
        out = render(report, fmt)
        assert "4.478554010391235" not in out
        assert "0.3088000960000272" not in out
        assert not re.search(r"\d\.\d{4,}", out), fmt
    assert "ended done in 4.5 s" in render(report, "text")
    assert "ended reisolated in 2 min 05 s" in render(report, "text")
    assert (
        json.loads(render(report, "json"))["summary"]["runs"][0]["duration_s"] == 4.478554010391235
    )


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "unknown"),
        (0.01, "< 0.1 s"),
        (0.3032, "0.3 s"),
        (4.478554010391235, "4.5 s"),
        (44.6, "45 s"),
        (125.2, "2 min 05 s"),
        (3 * 3600 + 7 * 60 + 20, "3 h 07 min"),
        (2 * 86400 + 4 * 3600 + 59, "2 d 04 h"),
    ],
)
def test_human_duration(seconds: float | None, shown: str) -> None:
    assert human.duration(seconds) == shown


def test_commands_are_shown_once(crisis_log: Path) -> None:
    """The device.change that sent what its step.started listed refers to it instead."""
    rows = {r.seq: r for r in _report(crisis_log).rows}
    assert rows[3].event == "step.started" and rows[3].commands == tuple(COMMANDS)
    assert rows[4].event == "device.change"
    assert rows[4].commands == () and rows[4].commands_as_seq == 3
    text = render(_report(crisis_log), "text")
    assert text.count(COMMANDS[1]) == 1
    assert "commands: as at #3" in text


def test_flows_count_only_is_said_as_such(crisis_log: Path) -> None:
    """Today's runs record a count of flow problems, not per-flow verdicts: the report says so."""
    note = _report(crisis_log).summary.flow_note
    assert note.startswith(
        "the log holds no per-flow result, only each run's count of flow problems (1 in 3 "
        "run(s): r-isolate 0, r-degrade 0, r-reconnect 1)"
    )


def test_flow_results_per_flow_when_recorded(log_dir: Path) -> None:
    """A record carrying per-flow verdicts shows one line per flow with its sources."""
    writer = ChainWriter(log_dir, clock=Clock())
    writer.append({"event": "run.started", "run_id": "r", "playbook": "p", "sites": ["a"]})
    writer.append(
        {
            "event": "run.finished",
            "run_id": "r",
            "outcome": "failed",
            "flows": [
                {
                    "flow": "icu-monitors",
                    "status": "passed",
                    "expected": "open",
                    "confirmed_by": ["twin", "counters:fw1"],
                },
                {
                    "flow": "pacs",
                    "status": "failed",
                    "expected": "open",
                    "contradicted_by": ["twin"],
                },
            ],
        }
    )
    writer.close()
    flows = build(log_dir, run="r").summary.flows
    assert [(f.flow, f.status, f.how) for f in flows] == [
        ("icu-monitors", "passed", "confirmed by twin, counters:fw1"),
        ("pacs", "failed", "contradicted by twin"),
    ]


def test_chain_head_proves_the_record(crisis_log: Path) -> None:
    """The head's seq and hash, as `audit verify` computes them, are in every form."""
    check = verify(crisis_log)
    report = _report(crisis_log)
    assert check.head_hash is not None
    for fmt in ("text", "md", "html"):
        assert check.head_hash in render(report, fmt)


def test_html_is_self_contained_escaped_and_printable(crisis_log: Path) -> None:
    """No remote asset, a print stylesheet, logged markup escaped."""
    page = render(_report(crisis_log), "html")
    assert not re.search(r"(src|href)=\"?https?:", page)
    assert "@media print" in page
    assert (
        "uplink back up &lt;b&gt;" in page
        and "<b>" not in page.split("<body>")[1].split("uplink")[1][:20]
    )


# -- --since -------------------------------------------------------------------------------------

NOW = datetime(2024, 10, 15, 14, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("1h", NOW - timedelta(hours=1)),
        ("30m", NOW - timedelta(minutes=30)),
        ("2d", NOW - timedelta(days=2)),
        ("1h30m", NOW - timedelta(minutes=90)),
        ("today", datetime(2024, 10, 15, tzinfo=UTC)),
        ("yesterday", datetime(2024, 10, 14, tzinfo=UTC)),
        ("2024-10-15", datetime(2024, 10, 15, tzinfo=UTC)),
        ("2024-10-15T05:00+02:00", datetime(2024, 10, 15, 3, tzinfo=UTC)),
    ],
)
def test_since_reads_what_people_type(text: str, moment: datetime) -> None:
    assert parse_moment(text, now=NOW) == moment


@pytest.mark.parametrize("text", ["1x", "last tuesday", "", "-1h", "h", "99999999d", "2024-13-01"])
def test_since_refuses_nonsense_saying_what_it_reads(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_moment(text, now=NOW)
    assert info.value.exit_code == 2
    assert "--since" in info.value.message
    assert "yesterday" in (info.value.hint or "")


def test_since_selects_from_that_moment(crisis_log: Path) -> None:
    """`--since 1h` one hour before the drift alarm keeps the reconnection and the alarm only."""
    since = parse_moment("1h", now=T0 + timedelta(seconds=4000))
    events = [r.event for r in build(crisis_log, since=since).rows]
    assert events[0] == "run.started" and events[-1] == "drift.alarm"
    assert len(events) == 4


# -- notifications and clocks --------------------------------------------------------------------


def test_notification_meets_its_clock_at_the_time_it_was_made(crisis_log: Path) -> None:
    """The ARS clock is met by the notification, at the time it was made (not recorded), with
    its reference; the others are pending."""
    inc = _report(crisis_log).incidents[0]
    clocks = {c.kind: c for c in inc.clocks}
    assert clocks["ars"].status == "notified"
    assert clocks["ars"].notified_at == T0 + timedelta(seconds=240)
    assert (clocks["ars"].to, clocks["ars"].reference) == ("ARS", "PSIG-42")
    assert clocks["cnil"].status == "pending"
    assert inc.notifications[0].by == "directeur de garde"
    assert (
        "NOTIFIED ARS (regional health agency) report: due at once from the declaration "
        "(2024-10-15 03:00:00 UTC) (without delay); notified 2024-10-15 03:04:00 UTC to ARS, ref "
        "PSIG-42 (notified 4 min 00 s after declaration)" in render(_report(crisis_log), "text")
    )
    assert "| ARS / PSIG-42 |" in render(_report(crisis_log), "md")


def test_ars_clock_is_due_now_until_notified_never_overdue(crisis_log: Path) -> None:
    """ "Without delay" has no deadline to miss: from the declaration until `incident notify
    --to ars` is recorded the clock says "due now: not yet notified" (in the report, the ARS
    draft and the page), then "notified at ..."; never OVERDUE from the start."""
    log = crisis_log.parent / "before-notify"  # the log as it stood before seq 13 (the notify)
    log.mkdir()
    kept = [
        line
        for path in sorted(crisis_log.glob("audit-*.jsonl"))
        for line in path.read_text().splitlines()
        if json.loads(line)["seq"] < 13
    ]
    (log / sorted(crisis_log.glob("audit-*.jsonl"))[0].name).write_text("\n".join(kept) + "\n")
    later = T0 + timedelta(hours=2)
    report = build(log, incident="INC-1", now=later)
    ars = {c.kind: c for c in report.incidents[0].clocks}["ars"]
    assert (ars.status, ars.notified_at) == ("due", None)
    assert ars.note == "due now: not yet notified (2 h 00 min since the declaration)"
    text = render(report, "text")
    assert "DUE NOW  ARS (regional health agency) report: due at once from the declaration" in text
    assert "OVERDUE" not in text.split("NIS2 early warning")[0]
    assert '<td class="due">DUE NOW</td>' in render(report, "html")
    ars_draft = drafts.render(drafts.draft("ars", log, now=later), "text")
    assert (
        "* Délai: sans délai : à faire maintenant, pas encore notifiée (2 h 00 min depuis la "
        "déclaration)" in ars_draft
    )
    done = {c.kind: c for c in _report(crisis_log).incidents[0].clocks}["ars"]
    assert (done.status, done.note) == ("notified", "notified 4 min 00 s after declaration")
    notified = drafts.render(drafts.draft("ars", crisis_log, now=later), "text")
    assert "* Délai: notifiée le 2024-10-15 03:04:00 UTC à ARS, réf. PSIG-42" in notified


def test_final_report_is_due_a_month_after_the_notification(log_dir: Path) -> None:
    """NIS2 art. 23(4)(d): the final report's due time follows the notification once made."""
    clock = Clock()
    writer = ChainWriter(log_dir, clock=clock)
    writer.append({"event": "incident.declared", "incident_id": "I"})
    clock.now = T0 + timedelta(hours=50)
    writer.append({"event": "regulatory.notified", "incident_id": "I", "kind": "nis2_notification"})
    writer.close()
    clocks = {c.kind: c for c in build(log_dir, incident="I").incidents[0].clocks}
    assert clocks["nis2_final_report"].due == datetime(2024, 11, 17, 5, tzinfo=UTC)


# -- drafts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "filled", "to_complete"),
    [
        (
            "ars",
            {
                "Date et heure du constat": "2024-10-15 03:00:00 UTC",
                "Établissements / sites concernés": "nantes, rennes",
                "Notifications déjà faites": "PSIG-42",
            },
            [
                "Structure (raison sociale, FINESS, adresse)",
                "Causes identifiées",
                "Impact sur la prise en charge des patients",
            ],
        ),
        (
            "cnil",
            {
                "Date et heure du constat": "2024-10-15 03:00:00 UTC",
                "Délai": "échéance 2024-10-18 03:00:00 UTC (72 h) : pending, 2 d 22 h left",
            }
            | {"Description (telle que consignée)": "ransom note on the admin PCs"},
            [
                "Délégué à la protection des données (DPO)",
                "Catégories et nombre approximatif de personnes concernées",
            ],
        ),
        (
            "nis2-early",
            {
                "Time of awareness (UTC)": "2024-10-15 03:00:00 UTC",
                "Still degraded (per the log)": "re-isolated: admin",
            },
            ["Suspected unlawful or malicious act?", "Possible cross-border impact?"],
        ),
        (
            "nis2-notification",
            {
                "Measures taken": "isolate-site r-isolate on rennes (by ops)",
                "Containment per site": "rennes: contained at 2024-10-15 03:01:03 UTC, 1 min 03 s",
            },
            ["Severity and impact", "Indicators of compromise"],
        ),
        (
            "nis2-final",
            {"Notifications made": "ars to ARS (2024-10-15 03:04:00 UTC, ref PSIG-42)"},
            ["Root cause", "Severity and impact", "Possible cross-border impact?"],
        ),
    ],
)
def test_each_draft_fills_from_the_log_and_marks_the_rest(
    crisis_log: Path, kind: str, filled: dict[str, str], to_complete: list[str]
) -> None:
    made = drafts.draft(kind, crisis_log, integrity=verify(crisis_log), now=T0 + timedelta(hours=2))
    values = {f.label: f.value for s in made.sections for f in s.fields}
    for label, part in filled.items():
        assert part in (values[label] or ""), (label, values[label])
    for label in to_complete:
        assert values[label] is None, label
        assert label in made.to_complete
    text = drafts.render(made, "text")
    marker = "[À COMPLÉTER : " if made.lang == "fr" else "[TO COMPLETE: "
    assert text.count(marker) == len(made.to_complete) + 1  # + the legend
    assert f"seq {verify(crisis_log).head_seq} sha256 {verify(crisis_log).head_hash}" in text
    assert "seq 1..17" in text


def test_cnil_draft_asks_for_the_delay_reasons_past_72_hours(crisis_log: Path) -> None:
    made = drafts.draft("cnil", crisis_log, now=T0 + timedelta(hours=80))
    assert "Motifs du retard (notification au-delà de 72 h)" in made.to_complete


def test_a_draft_needs_a_declared_incident(log_dir: Path) -> None:
    writer = ChainWriter(log_dir, clock=Clock())
    writer.append({"event": "run.started", "run_id": "r"})
    writer.close()
    with pytest.raises(ConfigError, match="no incident declared"):
        drafts.draft("ars", log_dir)
    with pytest.raises(ConfigError, match="no incident 'X'"):
        drafts.draft("ars", log_dir, incident="X")


# -- a tampered log ------------------------------------------------------------------------------


def test_a_tampered_log_makes_report_and_draft_say_so(crisis_log: Path) -> None:
    path = next(crisis_log.glob("audit-*.jsonl"))
    path.write_text(path.read_text().replace("PSIG-42", "PSIG-43", 1))
    integrity = verify(crisis_log)
    report = build(crisis_log, incident="INC-1", integrity=integrity)
    assert not report.chain.ok
    assert "CHAIN BROKEN:" in render(report, "text").splitlines()[4]
    for kind, says in (
        ("ars", "LA CHAÎNE D'AUDIT NE SE VÉRIFIE PAS"),
        ("nis2-early", "THE AUDIT CHAIN DOES NOT VERIFY"),
    ):
        made = drafts.draft(kind, crisis_log, integrity=integrity)
        assert (
            says in drafts.render(made, "text").split("Built from")[0].split("Établi à partir")[0]
        )
        assert says[-15:] in drafts.render(made, "html")


# -- the commands --------------------------------------------------------------------------------


def cordon(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`cordon ARGS` through `agent.cli.main` (its exit codes)."""
    from agent.cli import main  # noqa: PLC0415

    argv = sys.argv
    sys.argv = ["cordon", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = argv
        audit.close()
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_report_since_and_its_refusal(
    crisis_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cordon(
        capsys, "audit", "report", "--log-dir", str(crisis_log), "--since", "2024-10-15"
    )
    assert code == 0, err
    assert out.startswith("Cordon incident record\n\nSelection: since 2024-10-15T00:00:00+00:00")
    code, out, err = cordon(
        capsys, "audit", "report", "--log-dir", str(crisis_log), "--since", "lately"
    )
    assert code == 2
    assert "--since 'lately' is not a time Cordon reads" in err
    assert out == ""
    path = next(crisis_log.glob("audit-*.jsonl"))
    path.write_text(path.read_text().replace('"ops"', '"nobody"', 1))
    code, out, err = cordon(
        capsys, "audit", "report", "--log-dir", str(crisis_log), "--since", "2d"
    )
    assert code == 8  # written, then the exit says the log does not verify
    assert "Integrity: CHAIN BROKEN:" in out
    assert "audit chain broken: first bad record at" in err


def test_cli_draft_writes_the_file_and_exits_8_on_a_broken_chain(
    crisis_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "ars.html"
    args = ["incident", "draft", "--for", "ars", "--log-dir", str(crisis_log), "--format", "html"]
    code, _, err = cordon(capsys, *args, "-o", str(out_file))
    assert code == 0, err
    assert "[À COMPLÉTER : raison sociale, n° FINESS, adresse]" in out_file.read_text()
    path = next(crisis_log.glob("audit-*.jsonl"))
    path.write_text(path.read_text().replace("ransom note", "nothing much", 1))
    code, out, err = cordon(capsys, *args[:-2])
    assert code == 8
    assert "LA CHAÎNE D'AUDIT NE SE VÉRIFIE PAS" in out
    assert "audit chain broken" in err


def test_cli_notify_records_and_the_clock_shows_it_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`incident notify --to cnil --reference R --at 10m --by dpo` (--local): recorded with the
    time it was made; the report shows the CNIL clock met. Bad input writes nothing."""
    logs = tmp_path / "logs"
    roles = tmp_path / "roles.yaml"
    roles.write_text("operator: [root]\nroot_is: operator\n", encoding="utf-8")
    roles.chmod(0o644)
    monkeypatch.setenv("CORDON_LOG_DIR", str(logs))
    local = ["--local", "--state-dir", str(tmp_path / "state"), "--roles", str(roles)]
    code, _, err = cordon(
        capsys, "incident", "open", *local, "--name", "drill", "--reason", "exercise"
    )
    assert code == 0, err
    records = len(audit_lines(logs))
    for bad in (["--at", "tomorrow"], ["--at", "2999-01-01"], ["--reference", " "]):
        argv = ["incident", "notify", *local, "--to", "cnil", "--reference", "R-1", *bad]
        code, _, err = cordon(capsys, *argv)
        assert code == 2, (bad, err)
        assert "Traceback" not in err
    assert len(audit_lines(logs)) == records  # nothing written
    code, out, err = cordon(
        capsys,
        "incident",
        "notify",
        *local,
        "--to",
        "cnil",
        "--reference",
        "CNIL-77",
        "--at",
        "10m",
        "--by",
        "dpo",
    )
    assert code == 0, err
    assert "cnil to CNIL at " in out and "by dpo recorded (ref CNIL-77)" in out
    last = json.loads(audit_lines(logs)[-1])
    assert (last["event"], last["kind"], last["ref"], last["notified_by"]) == (
        "regulatory.notified",
        "cnil",
        "CNIL-77",
        "dpo",
    )
    iid = last["incident_id"]
    code, out, err = cordon(
        capsys, "audit", "report", "--log-dir", str(logs), "--incident", iid, "--format", "json"
    )
    clocks = {c["kind"]: c for c in json.loads(out)["incidents"][0]["clocks"]}
    assert clocks["cnil"]["status"] == "met"
    assert clocks["cnil"]["notified_at"] == last["notified_at"]
    assert clocks["cnil"]["reference"] == "CNIL-77"


def audit_lines(logs: Path) -> list[str]:
    return [line for p in sorted(logs.glob("audit-*.jsonl")) for line in p.read_text().splitlines()]


# -- golden output -------------------------------------------------------------------------------

GOLDEN = Path(__file__).with_name("golden")


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("record.txt", lambda log: render(_report(log), "text")),
        ("record.md", lambda log: render(_report(log), "md")),
        ("draft-ars.txt", lambda log: drafts.render(_draft(log, "ars"), "text")),
        ("draft-nis2-final.md", lambda log: drafts.render(_draft(log, "nis2-final"), "md")),
    ],
)
def test_golden_output(crisis_log: Path, name: str, make: Any) -> None:
    """The whole text, byte for byte (the log's path aside). After an intended change:
    CORDON_GOLDEN_UPDATE=1 pytest tests/audit/test_record.py -k golden, then read the diff."""
    text = make(crisis_log).replace(str(crisis_log), "<LOG>")
    path = GOLDEN / name
    if os.environ.get("CORDON_GOLDEN_UPDATE") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def _draft(log: Path, kind: str) -> drafts.Draft:
    return drafts.draft(kind, log, integrity=verify(log), now=T0 + timedelta(hours=2))


def test_an_incident_is_named_by_its_id_or_its_name(crisis_log: Path) -> None:
    """`--incident ransomware-rennes` is INC-1, for the report and the drafts."""
    by_name = build(crisis_log, incident="ransomware-rennes")
    assert [i.incident_id for i in by_name.incidents] == ["INC-1"]
    assert len(by_name.rows) == len(build(crisis_log, incident="INC-1").rows) == 17
    assert "INC-1 (ransomware-rennes)" in drafts.render(
        drafts.draft("ars", crisis_log, incident="ransomware-rennes"), "text"
    )
