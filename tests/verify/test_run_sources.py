"""The run's flow verification from sources, without a twin (fake devices, sources that report
fixed observations): with no source every flow is unverified, said per flow and never passed; a
contradiction fails the flow and names the source; a source that cannot run leaves its flows
unverified unless another confirms them; failed flows are asked again until they settle; each
verdict is journaled, audited, in the run's report and in `cordon status`."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from agent.audit.pipeline import current_source
from agent.cli.options import Opts
from agent.cli.render.runs import flow_lines
from agent.cli.render.status import render_status
from agent.drivers.pool import Pool
from agent.engine.journal import SCHEMA_VERSION, FlowCheck, Journal
from agent.errors import DeviceError
from agent.inventory import load
from agent.inventory.models import Flow, Inventory
from agent.playbook import load as load_playbook
from agent.playbook.models import Playbook
from agent.run.executor import Executor
from agent.run.model import RunReport
from agent.service.service import local
from agent.verify.check import check_flows
from agent.verify.evidence import Evidence, FlowStatus, Seen
from agent.wire import RunView
from agent.wire.reports import StatusOut
from tests.conftest import EXAMPLE
from tests.engine.fakes import World

SITE = "nantes-jules-verne"
CHECK = (
    "name: q\nlevel: L4\nsteps:\n"
    "  - {name: admin, action: shut_zone_ports, zones: [admin]}\n"
    "  - {name: check, action: verify_flows}\n"
)
OPTS = Opts(
    json=False, local=True, socket=None, token=None, state_dir=Path(), inventory=None, roles=None
)


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load(EXAMPLE)


def playbook(tmp_path: Path, inv: Inventory) -> Playbook:
    path = tmp_path / "q.yaml"
    path.write_text(CHECK)
    return load_playbook(path, inv)


class Saw:
    """A source that saw every flow asked as `seen`, except those in `other` (seen otherwise),
    and whose check is counted."""

    def __init__(self, name: str, seen: Seen, other: Mapping[str, Seen] | None = None) -> None:
        self.name, self.seen, self.other = name, seen, dict(other or {})
        self.asked: list[list[str]] = []

    def check(self, _site: str, flows: Sequence[Flow], _exp: Mapping[str, bool]) -> list[Evidence]:
        self.asked.append([f.name for f in flows])
        return [Evidence(f.name, self.name, self.other.get(f.name, self.seen)) for f in flows]


class Broken:
    name = "device"

    def check(self, _site: str, _flows: Sequence[Flow], _exp: Mapping[str, bool]) -> list[Evidence]:
        raise DeviceError("nts-fw1", "decide", "connection refused")


def run_with(
    tmp_path: Path, inv: Inventory, sources: Sequence[object]
) -> tuple[RunReport, Journal]:
    journal = Journal(tmp_path / "j.sqlite")
    with Pool(inv, keepalive=None, factory=World().factory) as pool:
        report = Executor(inv, journal, pool, actor="t", sources=sources).run(  # type: ignore[arg-type]
            playbook(tmp_path, inv), [SITE]
        )
    return report, journal


def site_flows(inv: Inventory) -> list[str]:
    return [f.name for f in inv.flows if SITE in (f.source.site, f.destination.site)]


def audited(kind: str) -> list[dict[str, object]]:
    """The records of `kind` in the chain this process writes (files, or PostgreSQL's)."""
    return [r for r in current_source().records() if r.get("event") == kind]


def test_no_source_leaves_every_flow_unverified_never_passed(
    tmp_path: Path, inv: Inventory
) -> None:
    report, journal = run_with(tmp_path, inv, [])
    checks = journal.last_flow_checks()
    gate = journal.gate(report.run_id, SITE, "check")
    journal.close()
    names = site_flows(inv)
    assert (report.status, report.flow_problems) == ("done", [])
    assert len(report.flows_unverified) == len(names)
    assert all("no flow source configured" in line for line in report.flows_unverified)
    assert {c.flow: c.status for c in checks.values()} == dict.fromkeys(names, "unverified")
    assert gate is not None
    assert gate.detail["counts"] == {"passed": 0, "failed": 0, "unverified": len(names)}
    said = {r["flow"]: r["outcome"] for r in audited("flow.checked") if r["flow"] in names}
    assert said == dict.fromkeys(names, "unverified")


def test_a_contradiction_fails_the_flow_and_names_its_source(
    tmp_path: Path, inv: Inventory
) -> None:
    """One source sees everything as the plan expects (here: `Saw` answers what it is told is
    expected: a shut admin zone cuts its flows), the other sees one expected-open flow closed."""
    names = site_flows(inv)
    victim = next(f.name for f in inv.flows if f.name in names and f.must_survive)

    class AsExpected:
        name = "twin"

        def check(
            self, _site: str, flows: Sequence[Flow], exp: Mapping[str, bool]
        ) -> list[Evidence]:
            return [
                Evidence(f.name, self.name, Seen.OPEN if exp[f.name] else Seen.CLOSED)
                for f in flows
            ]

    other = Saw("device:nts-fw1", Seen.UNKNOWN, {victim: Seen.CLOSED})
    report, journal = run_with(tmp_path, inv, [AsExpected(), other])
    checks = journal.last_flow_checks()
    journal.close()
    assert report.status == "failed"
    assert report.flow_problems == [
        f"flow {victim}: expected open, observed closed (by device:nts-fw1)"
    ]
    assert checks[victim].status == "failed"
    assert checks[victim].confirmed_by == ("twin",)
    assert checks[victim].contradicted_by == ("device:nts-fw1",)
    assert all(checks[n].status == "passed" for n in names if n != victim)
    # the failed flow was asked again (every source) before it was declared failed
    assert sum(victim in asked for asked in other.asked) > 1


def test_a_source_that_cannot_run_leaves_flows_unverified(tmp_path: Path, inv: Inventory) -> None:
    names = site_flows(inv)
    some = set(names[: len(names) // 2])
    partial = Saw("probe:p1", Seen.UNKNOWN, dict.fromkeys(some, Seen.OPEN))
    # only flows expected open may be confirmed OPEN: keep those
    report, journal = run_with(tmp_path, inv, [Broken(), partial])
    checks = journal.last_flow_checks()
    gate = journal.gate(report.run_id, SITE, "check")
    journal.close()
    assert gate is not None
    assert gate.detail["source_errors"] == {"device": "nts-fw1: decide: connection refused"}
    for n in names:
        c = checks[n]
        if n in some and c.expected == "open":
            assert c.status == "passed"
        elif n in some:
            assert c.status == "failed"  # seen open, expected closed: a contradiction
        else:
            assert c.status == "unverified"
    unverified = [line for line in report.flows_unverified if "could not run" in line]
    assert unverified


def test_failed_flows_are_asked_again_until_they_settle(inv: Inventory) -> None:
    """A flow first seen otherwise (a sister site still changing) is asked again, its
    expectation re-read, and passes once it is seen as expected; one that never settles fails
    when the settle time is over."""
    flows = [f for f in inv.flows if f.name in site_flows(inv)][:3]
    reads = []

    def current() -> dict[str, object]:
        reads.append(1)
        return {}

    class Late:
        name = "twin"

        def __init__(self) -> None:
            self.calls = 0

        def check(
            self, _site: str, asked: Sequence[Flow], exp: Mapping[str, bool]
        ) -> list[Evidence]:
            self.calls += 1
            seen = [Seen.OPEN if exp[f.name] else Seen.CLOSED for f in asked]
            if self.calls == 1:
                seen[0] = Seen.CLOSED if seen[0] is Seen.OPEN else Seen.OPEN
            return [Evidence(f.name, self.name, s) for f, s in zip(asked, seen, strict=True)]

    late = Late()
    out = check_flows(inv, [late], SITE, flows, current, settle=30.0, pause=0.0)  # type: ignore[arg-type]
    assert [r.status for r in out.results] == [FlowStatus.PASSED] * 3
    # read before the first round, while waiting between the rounds, and before the second
    assert (out.rounds, late.calls, len(reads)) == (2, 2, 3)
    never = Saw("device:x", Seen.CLOSED)
    out = check_flows(inv, [never], SITE, flows[:1], current, settle=0.0, pause=0.0)  # type: ignore[arg-type]
    assert out.results[0].status is FlowStatus.FAILED


def test_the_run_and_status_say_each_verdict(tmp_path: Path, inv: Inventory) -> None:
    state = tmp_path / "state"
    state.mkdir()
    journal = Journal(state / "journal.sqlite")
    with Pool(inv, keepalive=None, factory=World().factory) as pool:
        report = Executor(inv, journal, pool, actor="t").run(playbook(tmp_path, inv), [SITE])
    journal.close()
    with local(EXAMPLE, state) as service:
        data = StatusOut.model_validate(service.status())
        view = RunView.model_validate(service.show_run(None, run_id=report.run_id))
    must = [f for f in inv.flows if f.must_survive]
    assert len(data.flows) == len(must)
    checked = {f.flow: f for f in data.flows if f.status is not None}
    assert checked
    assert all(f.status == "unverified" for f in checked.values())
    assert all(f.run_id == report.run_id and f.step == "check" for f in checked.values())
    text = render_status(OPTS, data)
    assert f"must-survive flows ({len(must)}): 0 passed, 0 failed, {len(checked)} unverified" in (
        text
    )
    lines = flow_lines(OPTS, view)
    assert any("UNVERIFIED" in line for line in lines)
    assert not any(line.strip().startswith("FAILED") for line in lines)


@pytest.mark.sqlite_only(
    "rewrites a SQLite file into the previous schema; on PostgreSQL the kept schema-0 "
    "journal's migration: tests/engine/test_journal.py"
)
def test_a_journal_of_the_previous_schema_gains_the_flow_checks(tmp_path: Path) -> None:
    """A journal written before flow checks were kept (schema 1) is migrated when opened: the
    table is there, empty, and the version is the current one."""
    path = tmp_path / "old.sqlite"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE flow_checks")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    journal = Journal(path)
    assert journal.last_flow_checks() == {}
    check = FlowCheck("r", "s", "check", "f", True, "open", "passed", ("twin",), (), 1.0)
    journal.record_flow_checks([check])
    assert journal.last_flow_checks(must_survive_only=True) == {"f": check}
    journal.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    db.close()
