"""One exercise on the twin (the twin lock is shared by every twin user: ONE small test): the
small group with production-style 10.x / 172.19.x addresses and production secret references is
renumbered into a sandbox, played, and its report checked: containment time, flow availability,
the audit chain head verifying; no production address was ever a target."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

import agent.platforms.registry  # noqa: F401 - registers the platforms the inventory names
from agent import audit
from agent.drill import exercise, record, sandbox, scenario
from agent.inventory import load
from agent.lab.state import LabState

pytestmark = [pytest.mark.twin, pytest.mark.twin_lifecycle]

DATA = Path(__file__).with_name("data")


def test_a_short_drill_on_a_10net_group(tmp_path: Path) -> None:
    group = load(DATA / "small-10net.yaml")
    sc = scenario.load(DATA / "short.yaml")
    said: list[str] = []
    outcome = exercise.play(sc, group, tmp_path / "out", said.append)
    assert LabState.load("cdn") is None, "the twin was left up"
    assert outcome.error is None, outcome.error
    # the twin was built from the sandbox copy only, every address in 198.18/15
    copy = load(outcome.sandbox)
    assert Path(outcome.sandbox).is_relative_to(tmp_path)
    for what, value in sandbox.addresses(copy):
        net = value if isinstance(value, ipaddress.IPv4Network) else ipaddress.IPv4Network(value)
        assert net.subnet_of(sandbox.SANDBOX), what
    assert not (Path("/etc/cordon/prod-secrets")).exists()  # the production refs were never made
    rec = record.build(outcome)
    assert [s.status for s in rec.steps] == ["done", "done", "done"]
    assert [s.actor for s in rec.steps] == ["Alice Astreinte", "Chloe Infra", "Alice Astreinte"]
    assert rec.steps[2].approver == "Bruno Second"
    hit = next(s for s in rec.sites if s.site == "bretagne-etab-3")
    assert hit.time_to_contain is not None and hit.time_to_contain.total_seconds() > 0
    assert rec.reconnections and rec.reconnections[0].time is not None
    assert rec.reconnections[0].zones  # soak steps passed, each with its time
    assert rec.flows and all(f.sent > 0 for f in rec.flows)
    assert {f.flow for f in rec.flows} == {f.name for f in group.flows if f.must_survive}
    # the chain head the report shows is the one an independent verification finds
    check = audit.verify(outcome.log_dir)
    assert check.ok and rec.chain.ok
    assert rec.chain.head_hash == check.head_hash and rec.chain.head_seq == check.head_seq
    assert {"Alice Astreinte", "Bruno Second", "Chloe Infra"} <= set(rec.people)
    # the exercise's bounds and its availability figures are in the chain the head proves
    events = [r.event for r in rec.rows]
    assert events[0] == "drill.started" and events[-1] == "drill.finished"
    paths = record.write(rec, tmp_path / "out")
    text, html = (p.read_text() for p in paths)
    assert check.head_hash is not None and check.head_hash in text and check.head_hash in html
    assert "@media print" in html and "Time to contain" in html
    for f in rec.flows:
        assert f.percent is not None and f"{f.percent:6.2f} %" in text
    # no production address appears in what the drill wrote (10.18.x, 172.19.x), but for the
    # renumbering table that maps the sandbox back to the group's own addresses
    for p in (tmp_path / "out").rglob("*"):
        if (
            p.is_file()
            and p.suffix in (".yaml", ".txt", ".html", ".jsonl")
            and (p.name != "renumbering.txt")
        ):
            body = p.read_text()
            assert "10.18." not in body and "172.19." not in body, p
