"""On the twin, through the real daemon and CLI: an incident declared at one site, two others put
in preventive degraded mode, the site hit isolated, the ARS notified; then each regulator's
draft (`cordon incident draft`) and the incident record (`cordon audit report`, text and HTML).

Every pre-filled fact of the drafts is checked against the journal (the daemon's own answers:
`status`, `runs`, `show`) and the audit chain (each `[seq N]` a record whose content still
hashes to its hash, each time stated a cited record's time); the fields a person must complete
are marked, counted, and the ones the log cannot answer are among them. Every fact of the
report is walked back to its record (tests/audit/traced.py).

One test (the twin is shared and locked): afterwards every run is rolled back, the daemon
stopped by PID and every flow of the twin open again."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.audit import human
from tests.audit.traced import CITE, chain_records, check_draft, check_html, check_text, expand
from tests.conftest import Twin
from tests.daemon.on_twin import on_the_twin
from tests.daemon.test_daemon_cli import Stack

pytestmark = pytest.mark.twin

HIT = "rennes-la-sagesse"
PREVENTIVE = ("nantes-jules-verne", "fontenay-sud-vendee")
KINDS = ("ars", "nis2-early", "nis2-notification", "nis2-final", "cnil")
# what the log cannot answer: each draft must ask a person for it
MUST_ASK = {
    "ars": ["Structure (raison sociale, FINESS, adresse)", "Causes identifiées"],
    "cnil": ["Catégories et nombre approximatif de personnes concernées"],
    "nis2-early": ["Suspected unlawful or malicious act?"],
    "nis2-notification": ["Severity and impact", "Services affected"],
    "nis2-final": ["Root cause", "Services affected"],
}
MARKER = re.compile(r"\[(?:À COMPLÉTER :|TO COMPLETE:) [^\]]+\]")


@pytest.fixture
def stack(twin: Twin, tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path, isolate_net=False)  # the twin's addresses through its own veth
    with on_the_twin(s, twin):
        yield s


def moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def shown(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)


def field_lines(text: str, label: str) -> list[str]:
    """A field's value: its line after the label, or its indented lines."""
    lines = text.splitlines()
    (i,) = [n for n, ln in enumerate(lines) if ln.startswith(f"* {label}:")]
    first = lines[i][len(f"* {label}:") :].strip()
    first = re.sub(r"\s*\((?:source|from) \[seq [^\]]*\]\)$", "", first)
    if first and not first.startswith("(source") and not first.startswith("(from"):
        return [first]
    out = []
    for line in lines[i + 1 :]:
        if not line.startswith("    "):
            break
        out.append(line.strip())
    return out


def cordon_ok(s: Stack, *args: str, user: str) -> str:
    done = s.cordon(*args, user=user, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_drafts_and_report_of_an_incident_on_the_twin_match_the_journal_and_the_chain(
    stack: Stack,
) -> None:
    s = stack
    opened = s.ok_json(
        "incident", "open", "--name", "ransom-rennes", "--site", HIT, "--reason",
        "ransom note on the admin PCs", user="bob",
    )  # fmt: skip
    iid = opened["incident_id"]
    args = [x for site in PREVENTIVE for x in ("-s", site)]
    cordon_ok(s, "run", "preventive-degraded", *args, "--yes", "--reason", "contain", user="bob")
    cordon_ok(s, "run", "isolate-site", "-s", HIT, "--yes", "--reason", "ransomware", user="bob")
    cordon_ok(s, "incident", "notify", "--to", "ars", "--reference", "PSIG-2026-17", user="bob")

    # the journal, as the daemon answers it
    status = s.ok_json("status", user="dave")
    (incident,) = [i for i in status["incidents"] if i["incident_id"] == iid]
    runs = {r["run_id"]: r for r in s.ok_json("runs", user="dave")["runs"]}
    assert len(runs) == 2 and all(r["status"] == "done" for r in runs.values())
    shows = {rid: s.ok_json("show", rid, user="dave") for rid in runs}
    modes = {x["site"]: x["mode"] for x in status["sites"]}
    assert {modes[x] for x in (HIT, *PREVENTIVE)} == {"isolated"}
    chain = chain_records(s.logs)
    (notified,) = [r for r in chain.values() if r["event"] == "regulatory.notified"]
    (declared,) = [r for r in chain.values() if r["event"] == "incident.declared"]
    declared_at = datetime.fromisoformat(declared["ts"])
    assert declared["incident_id"] == iid

    texts = {}
    for kind in KINDS:
        texts[kind] = cordon_ok(
            s, "incident", "draft", "--for", kind, "--incident", iid, "--log-dir", str(s.logs),
            user="dave",
        )  # fmt: skip
    for kind, text in texts.items():
        fr = kind in ("ars", "cnil")
        # every cited record is in the chain, intact; every time stated is a cited record's
        assert check_draft(text, s.logs) >= 4, kind
        # the fields a person must complete: counted, marked, and the log's gaps among them
        count = int(re.search(r"^(\d+) (?:rubrique|field)", text, flags=re.M)[1])  # type: ignore[index]
        fields = [ln for ln in text.splitlines() if ln.startswith("* ")]
        assert count == sum(bool(MARKER.search(ln)) for ln in fields) > 0, kind
        for label in MUST_ASK[kind]:
            (line,) = [ln for ln in text.splitlines() if ln.startswith(f"* {label}:")]
            assert MARKER.search(line), (kind, label)
        if "FINESS" in text:
            assert "[À COMPLÉTER : raison sociale, n° FINESS, adresse]" in text

        # when it was known: the declaration, as the journal has it (to the second)
        label = "Date et heure du constat" if fr else "Time of awareness (UTC)"
        (awareness,) = field_lines(text, label)
        # the declaration record's time, which follows the journal's (written first)
        assert shown(awareness[:23]) == declared_at.replace(microsecond=0)
        first_run = min(r["created_at"] for r in runs.values())
        assert moment(incident["opened_at"]).replace(microsecond=0) <= shown(awareness[:23])
        assert shown(awareness[:23]) <= moment(first_run)
        label = "Description (telle que consignée)" if fr else "What happened (as recorded)"
        assert field_lines(text, label) == [incident["reason"]]

        if kind != "cnil":  # the sites: every run's, as the journal has them
            label = "Établissements / sites concernés" if fr else "Sites affected"
            (sites,) = field_lines(text, label)
            assert set(sites.split(", ")) == {x for r in runs.values() for x in r["sites"]}

        if kind in ("ars", "cnil", "nis2-notification", "nis2-final"):
            label = "Mesures prises (heure, action, sites, auteur)" if fr else "Measures taken"
            measures = field_lines(text, label)
            assert len(measures) == len(runs)
            for run in runs.values():
                (line,) = [m for m in measures if run["run_id"] in m]
                assert run["playbook"] in line and all(x in line for x in run["sites"])
                start = shown(line[:23])
                assert moment(run["created_at"]).replace(microsecond=0) <= start
                assert start <= moment(run["finished_at"])
                assert "(done)" in line and f"({'par' if fr else 'by'} bob)" in line
            label = "Confinement par site" if fr else "Containment per site"
            contained = field_lines(text, label)
            for run in runs.values():
                for site in run["sites"]:
                    (line,) = [c for c in contained if c.startswith((f"{site} ", f"{site}:"))]
                    at = shown(re.search(r"\d{4}-\S+ \S+ UTC", line)[0])  # type: ignore[index]
                    assert moment(run["created_at"]) - timedelta(seconds=1) <= at
                    assert at <= moment(run["finished_at"])
                    assert run["run_id"] in line
                    # the journal verified every step on the site
                    steps = [x for x in shows[run["run_id"]]["steps"] if x["site"] == site]
                    assert "verified" in {x["status"] for x in steps}
                    assert not [x for x in steps if x["status"] == "failed"]
                    # the time to contain: from the declaration to the step verified, as the
                    # records the line cites hold them
                    cited = [chain[n] for found in CITE.findall(line) for n in expand(found)]
                    (step,) = [r for r in cited if r["event"] == "step.succeeded"]
                    assert declared in cited
                    assert step["site"] == site and step["run_id"] == run["run_id"]
                    gap = datetime.fromisoformat(step["ts"]) - declared_at
                    assert human.span(gap) in line

        # what is still degraded: the sites the journal has not back to normal, and only them
        label = "Encore dégradé (selon le journal)" if fr else "Still degraded (per the log)"
        degraded = field_lines(text, label)
        named = {x for x in modes if any(line.startswith(f"{x}: ") for line in degraded)}
        assert named == {x for x, m in modes.items() if m != "normal"}, degraded

        # the flows cut and kept: each must-survive flow's verdict as the journal has it
        if kind in ("ars", "nis2-notification", "nis2-final"):
            label = (
                "Flux réseau coupés et maintenus (selon le journal)"
                if fr
                else "Network flows cut and kept (per the log)"
            )
            flows = field_lines(text, label)
            checked = [f for f in status["flows"] if f.get("status")]
            assert checked, "no must-survive flow verified in the journal"
            for f in checked:
                (line,) = [x for x in flows if x.startswith(f"{f['flow']}: ")]
                if (f["expected"], f["status"]) == ("open", "passed"):
                    assert ("maintenu (vérifié ouvert)" if fr else "kept (verified open)") in line
                else:
                    assert f["status"] in line or "coupé" in line or "cut" in line

    # the regulatory clocks: the ARS notified at the time recorded, the others counted
    made = shown(field_lines(texts["ars"], "Délai")[0].split("notifiée le ")[1][:23])
    when = notified.get("notified_at") or notified["ts"]
    assert made == datetime.fromisoformat(when).replace(microsecond=0)
    assert "PSIG-2026-17" in field_lines(texts["ars"], "Délai")[0]
    (early,) = field_lines(texts["nis2-early"], "Deadline")
    due = declared_at + timedelta(hours=24)
    assert early.startswith(f"due {human.moment(due)} (24 h): pending")

    # the incident record: every fact walked back to its record of the chain
    report = cordon_ok(
        s, "audit", "report", "--incident", iid, "--log-dir", str(s.logs), user="dave"
    )
    facts = check_text(report, s.logs)
    assert any("ARS" in f.text and "NOTIFIED" in f.text for f in facts)
    html = cordon_ok(
        s, "audit", "report", "--incident", iid, "--format", "html", "--log-dir", str(s.logs),
        user="dave",
    )  # fmt: skip
    # the HTML's facts: the summary's and the configuration snapshots' (before / after)
    assert check_html(html, s.logs) >= len([f for f in facts if f.seqs])
