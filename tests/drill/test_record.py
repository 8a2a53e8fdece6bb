"""The exercise report's deviations and rendering, from a made-up outcome (no twin): a step that
did not end as planned, a flow that lost probes, a step not played, names escaped in HTML."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.audit.report import Chain
from agent.drill import record, scenario
from agent.drill.exercise import FlowAvailability, Outcome, StepResult

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

SCENARIO = """\
name: t
objectives: ["Contain <fast>"]
hit: site-a
roles: {on_call: "Eve <b>On-call</b>", second_operator: Bob}
steps:
  - {name: contain, playbook: isolate-site, sites: hit}
  - {name: reconnect, playbook: reconnect, sites: hit, expect: reisolated}
  - {name: restore, playbook: restore-normal, approval: second_operator}
"""


def _report() -> record.ExerciseReport:
    sc = scenario.parse(SCENARIO)
    out = Outcome(
        sc, "/g.yaml", "/d/sandbox/inventory.yaml", Path("/d"), T0, T0 + timedelta(seconds=60)
    )
    out.steps = [
        StepResult("contain", "isolate-site", ["site-a"], "Eve", None, "done", "done", "r1",
                   T0, T0 + timedelta(seconds=8)),
        StepResult("reconnect", "reconnect", ["site-a"], "Eve", None, "reisolated", "done", "r2",
                   T0 + timedelta(seconds=9), T0 + timedelta(seconds=30)),
    ]  # fmt: skip
    out.flows = [
        FlowAvailability("icu", 100, 0, 0.0),
        FlowAvailability("lab", 100, 2, 1.2, T0 + timedelta(seconds=5), "timeout"),
    ]
    chain = Chain("ok", True, "chain verified: 10 records", head_seq=9, head_hash="ab" * 32)
    rec = record.ExerciseReport(out, T0, [], [], [], chain, {"Eve": ["run.started"]})
    rec.deviations = record._deviations(rec)
    return rec


def test_deviations_name_what_departed_from_the_plan() -> None:
    devs = _report().deviations
    assert any(d.startswith("step reconnect (reconnect): done, planned reisolated") for d in devs)
    assert "step restore not played" in devs
    assert any("must-survive flow lab: 2 of 100 probes failed" in d and "timeout" in d
               for d in devs)  # fmt: skip
    assert not any("icu" in d for d in devs)


def test_text_and_html_carry_the_figures_and_the_chain_head() -> None:
    rec = _report()
    text, html = record.render_text(rec), record.render_html(rec)
    for body in (text, html):
        assert "ab" * 32 in body and "98.00 %" in body and "100.00 %" in body
        assert "step restore not played" in body
    assert "@media print" in html
    assert "<b>On-call</b>" not in html and "&lt;b&gt;On-call&lt;/b&gt;" in html
    assert "Contain &lt;fast&gt;" in html
