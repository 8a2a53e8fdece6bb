"""The counters source during a real preventive-degraded run, on the twin of the second test
group (tests/data/ght-vallee.yaml), where a must-survive flow crosses sites: clinique-sud's
tele-expertise to hopital-nord, kept through the cut WAN by accept rules on both sites' Linux
firewalls. At each of the run's verify_flows steps (a source beside the twin's prober),
every firewall's `counters:<device>` source is asked about the
must-survive flows touching the site: the kept flow is confirmed OPEN by the counters of its
rules on both firewalls (its stream kept talking through the cut), never CLOSED by anyone; the
poller, reading the journal's records after the run, raises no traffic alarm (every kept flow
streams).

Only one twin per machine: this module builds its own under the session lock and is marked
`twin_lifecycle`, so it runs (and takes its twin down) before the session's example twin."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from agent import audit
from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.inventory.models import Flow
from agent.lab import flows
from agent.playbook import load as load_playbook
from agent.run.executor import Executor
from agent.service.health import TRAFFIC_STOPPED, HealthStore
from agent.service.poll import Poller
from agent.verify.counters import counter_sources
from agent.verify.evidence import Evidence, FlowStatus, Seen, combine
from tests.conftest import ROOT, Twin, own_twin
from tests.engine.test_any_group import RUNS, VALLEE

pytestmark = [pytest.mark.twin, pytest.mark.twin_lifecycle]

KEPT = "cs-teleexpertise"  # clinique-sud -> hopital-nord, through cs-fw, dc-edge, hn-fw


@pytest.fixture(scope="module")
def vallee(twin_lock: None) -> Iterator[Twin]:
    with own_twin(VALLEE) as built:
        yield built


def test_counters_confirm_the_kept_flow_during_preventive_degraded(
    vallee: Twin, tmp_path: Path
) -> None:
    audit.configure(tmp_path / "logs", console=False, seal_interval=0)
    journal = Journal(tmp_path / "journal.sqlite")
    seen: list[tuple[str, list[Evidence]]] = []
    with Pool(vallee.inv, keepalive=None) as pool:
        sources = counter_sources(vallee.inv, pool, window_s=2.0)

        class AskCounters:
            """Beside the twin's prober, at each verify step: every firewall's counters asked
            about the must-survive flows touching the site (recorded; nothing said to the run)."""

            name = "ask-counters"

            def check(
                self, site: str, _flows: Sequence[Flow], _expected: Mapping[str, bool]
            ) -> list[Evidence]:
                must = [
                    f
                    for f in vallee.inv.flows
                    if f.must_survive and site in (f.source.site, f.destination.site)
                ]
                expected = {f.name: True for f in must}
                evidence = [e for s in sources for e in s.check(site, must, expected)]
                seen.append((site, evidence))
                return []

        ex = Executor(
            vallee.inv,
            journal,
            pool,
            actor="test",
            sources=[flows.TwinSource(vallee.inv, vallee.bp), AskCounters()],
        )
        try:
            sites, params = RUNS["preventive-degraded"]
            pb = load_playbook(ROOT / "playbooks" / "preventive-degraded.yaml", vallee.inv, params)
            report = ex.run(pb, sites)
            assert report.status == "done", report
            kept_flow = [f for f in vallee.inv.flows if f.name == KEPT]
            now = [e for src in sources for e in src.check("", kept_flow, {KEPT: True})]
            # after the run: the poller reads the records, every kept flow streams: no alarm
            with HealthStore(tmp_path / "health.sqlite") as store:
                poller = Poller(vallee.inv, pool, journal.device_states, store)
                try:
                    poller.poll_once()
                    time.sleep(1.0)
                    after = poller.poll_once()
                finally:
                    poller.close()
                assert after.stopped == []
                assert [a for a in store.open_alarms() if a.kind == TRAFFIC_STOPPED] == []
        finally:
            for run in journal.runs():
                ex.rollback(run.run_id)
            journal.close()
            audit.close()
    # every verify step of the run asked the counters; none ever said closed
    assert sorted(site for site, _ in seen) == sorted(sites * 2)
    fw = {"clinique-sud": "cs-fw", "hopital-nord": "hn-fw"}
    last = {
        site: evidence for site, evidence in seen
    }  # each site's last verify (after the WAN cut)
    for _site, evidence in seen:
        assert all(e.seen is not Seen.CLOSED for e in evidence)
        for e in evidence:  # before its rules exist, a firewall says it has none
            assert e.seen is Seen.OPEN or "no counted rule" in e.detail, e
    for site, evidence in last.items():
        mine = [e for e in evidence if e.flow == KEPT and e.source == f"counters:{fw[site]}"]
        assert [e.seen for e in mine] == [Seen.OPEN], (site, evidence)
        (result,) = combine({KEPT: True}, evidence)
        assert result.status is FlowStatus.PASSED
    # once both sites are degraded, both firewalls' counters see it (and the core's router,
    # which holds no rule of it, says so)
    by = {e.source: e for e in now}
    assert by["counters:cs-fw"].seen is Seen.OPEN and by["counters:hn-fw"].seen is Seen.OPEN, by
    (result,) = combine({KEPT: True}, now)
    assert {"counters:cs-fw", "counters:hn-fw"} <= set(result.confirmed_by)
