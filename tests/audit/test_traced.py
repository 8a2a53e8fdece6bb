"""Every fact of `cordon audit report` (text and HTML) is traced to a record of the chain: it
cites the record's seq, "Records cited" gives the record's hash, and the fact's times and names
are the record's. A record altered in place, or a chain whose hashes were recomputed, makes the
report say so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.audit.report import build, cite, render
from agent.audit.verify import verify
from tests.audit.test_config_diff import config_log  # noqa: F401 - the fixture
from tests.audit.test_record import T0, _report, crisis_log  # noqa: F401 - the fixture
from tests.audit.traced import check_draft, check_html, check_text, text_facts


def test_every_fact_of_the_report_cites_records_of_the_chain(crisis_log: Path) -> None:  # noqa: F811
    report = _report(crisis_log)
    facts = check_text(render(report, "text"), crisis_log)
    # the summary's facts, each kind of them: incident, runs, sites, degraded, clocks, flows, people
    assert len(facts) >= 1 + 3 + 2 + 4 + 5 + 1 + 3
    assert check_html(render(report, "html"), crisis_log) == len(facts)
    assert all(c.intact for c in report.cited) and report.cited


def test_the_walk_fails_on_a_fact_that_cites_the_wrong_record(crisis_log: Path) -> None:  # noqa: F811
    """The check is not a formality: a run line citing another run's record, or a time no cited
    record holds, is caught."""
    text = render(_report(crisis_log), "text")
    swapped = text.replace(
        "ended done in 4.5 s [seq 2, 4, 7]", "ended done in 4.5 s [seq 2, 4, 12]"
    )
    assert swapped != text
    with pytest.raises(AssertionError, match="does not name"):
        check_text(swapped, crisis_log)
    moved = text.replace("started 2024-10-15 03:01:00 UTC", "started 2024-10-15 03:00:30 UTC")
    with pytest.raises(AssertionError, match="no cited record's time"):
        check_text(moved, crisis_log)


def test_cite_lists_and_ranges() -> None:
    assert cite([7, 2, 4, 0, None, 4]) == "[seq 2, 4, 7]"
    assert cite([14, 15, 16, 18, 19]) == "[seq 14-16, 18, 19]"
    assert cite([]) == "[no record]"


def _rewrite(log: Path, seq: int, change: dict[str, str], *, rehash: bool) -> None:
    from agent.audit.chain import record_hash  # noqa: PLC0415

    path = next(log.glob("audit-*.jsonl"))
    lines = path.read_text().splitlines()
    out = []
    for line in lines:
        record = json.loads(line)
        if record["seq"] != seq:
            out.append(line)
            continue
        record.update(change)
        if rehash:
            body = {k: v for k, v in record.items() if k != "hash"}
            record["hash"] = record_hash(body)
        out.append(json.dumps(record, ensure_ascii=False))
    path.write_text("\n".join(out) + "\n")


def test_a_record_altered_in_place_is_named_in_the_report(crisis_log: Path) -> None:  # noqa: F811
    """The reason of the declaration edited: the chain is broken, and the report names the
    record its facts rest on as ALTERED (text and HTML)."""
    _rewrite(crisis_log, 1, {"reason": "a routine test"}, rehash=False)
    report = build(crisis_log, incident="INC-1", integrity=verify(crisis_log), now=T0)
    text = render(report, "text")
    assert "CHAIN BROKEN" in text.splitlines()[4]
    assert (
        "ALTERED RECORDS: 1 record(s) a fact cites no longer match their own hash, [seq 1]" in text
    )
    assert "ALTERED: its content no longer hashes to it" in text.split("RECORDS CITED")[1]
    html = render(report, "html")
    assert "ALTERED RECORDS" in html and '<td class="broken">ALTERED</td>' in html
    with pytest.raises(AssertionError, match="no longer hashes"):
        check_text(text, crisis_log)


def test_a_record_rehashed_still_breaks_the_chain(crisis_log: Path) -> None:  # noqa: F811
    """Whoever edits a record and recomputes its hash still breaks the link of the next one:
    the record looks intact, the report's integrity line says the chain is broken."""
    _rewrite(crisis_log, 13, {"ref": "PSIG-99"}, rehash=True)
    report = build(crisis_log, incident="INC-1", integrity=verify(crisis_log), now=T0)
    text = render(report, "text")
    assert all(c.intact for c in report.cited)
    assert "CHAIN BROKEN" in text.splitlines()[4]
    assert "this record cannot be relied on" in text.splitlines()[4]
    assert any("PSIG-99" in f.text for f in text_facts(text))


def test_every_line_of_a_draft_that_cites_records_is_checked(crisis_log: Path) -> None:  # noqa: F811
    from agent.audit import drafts  # noqa: PLC0415

    for kind in drafts.DRAFTS:
        made = drafts.draft(kind, crisis_log, integrity=verify(crisis_log), now=T0)
        text = drafts.render(made, "text")
        assert check_draft(text, crisis_log) >= 4, kind
    ars = drafts.render(drafts.draft("ars", crisis_log, now=T0), "text")
    wrong = ars.replace("fin 2024-10-15 03:01:04 UTC (done)", "fin 2024-10-15 03:01:09 UTC (done)")
    assert wrong != ars
    with pytest.raises(AssertionError, match="no cited record's time"):
        check_draft(wrong, crisis_log)


def test_configuration_snapshots_are_traced_too(config_log: Path) -> None:  # noqa: F811
    """A run's record with config.before / config.after snapshots (and no incident): the
    summary's facts and, in HTML, each device's before / after cite their records."""
    from tests.audit.test_config_diff import _report as config_report  # noqa: PLC0415

    report = config_report(config_log)
    facts = check_text(render(report, "text"), config_log)
    html_facts = check_html(render(report, "html"), config_log)
    assert html_facts == len([f for f in facts if f.seqs]) + len(report.configs)
