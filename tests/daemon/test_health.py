"""The health store carries its schema version: a store written by the release before it opens
with its alarms and polls, migrated; a newer release's store is refused untouched. On both
backends (a SQLite file, a PostgreSQL database of the throwaway test cluster)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.engine.drift import Drift
from agent.engine.store import redact
from agent.errors import DaemonError
from agent.service.health import SCHEMA_VERSION, HealthStore, PollRow
from tests.pgserver import kept_store, schema_version, snapshot, stamp

TODAY = Path(__file__).parent / "data" / "health-v0.sqlite"  # written by the release before #12

Where = Callable[[str], Path | str]


def test_a_health_store_written_by_the_previous_release_opens_migrated(state_where: Where) -> None:
    """The kept store (an open re-applied alarm, a cleared one, two polls) reads back as written
    and is stamped with the current schema version; it goes on: a new alarm gets a new id."""
    where = kept_store(state_where, "health", TODAY)
    assert schema_version(where, "health") == 0
    with HealthStore(where) as h:
        (alarm,) = h.open_alarms("nts-sw1")
        assert (alarm.kind, alarm.subject, alarm.reapplied) == ("interface_up", "Gi1/0/3", 1)
        assert [a.kind for a in h.alarms(status="cleared")] == ["table_missing"]
        assert {d: p.status for d, p in h.last_polls().items()} == {
            "nts-fw1": "ok",
            "nts-sw1": "drift",
        }
        before = {a.id for a in h.alarms()}
        drift = Drift("nts-sw1", "interface_up", "up by hand", "Gi1/0/4")
        change = h.diff("nts-sw1", "nantes-jules-verne", [drift], [], open_now=[])
        (new,) = [a for a in h.commit(change) if a.subject == "Gi1/0/4"]
        assert new.id not in before
    assert schema_version(where, "health") == SCHEMA_VERSION


def test_a_health_store_from_a_newer_release_is_refused_untouched(state_where: Where) -> None:
    """A schema version this release does not know: refused naming the store; nothing changed."""
    where = kept_store(state_where, "health", TODAY)
    stamp(where, "health", SCHEMA_VERSION + 1)
    shown = str(where) if isinstance(where, Path) else redact(where)
    before = snapshot(where)
    with pytest.raises(DaemonError, match=rf"{re.escape(shown)}.*newer Cordon"):
        HealthStore(where)
    assert snapshot(where) == before


def test_alarms_and_polls_round_trip(state_where: Where) -> None:
    """Open, see again, re-apply, clear, and the last poll of each device replaced in place."""
    with HealthStore(state_where("health")) as h:
        drift = Drift("sw", "interface_up", "up", "gi3")
        (opened,) = h.commit(h.diff("sw", "site", [drift], []), now=10.0)
        assert (opened.status, opened.first_seen, opened.last_seen) == ("open", 10.0, 10.0)
        (seen,) = h.commit(h.diff("sw", "site", [drift], []), now=11.5)
        assert (seen.id, seen.last_seen) == (opened.id, 11.5)
        assert h.mark_reapplied("sw", now=12.0) == 1
        assert h.commit(h.diff("sw", "site", [], ["interfaces"]), now=13.0) == []
        cleared = h.alarm(opened.id)
        assert cleared is not None
        assert (cleared.status, cleared.cleared_at, cleared.reapplied) == ("cleared", 13.0, 1)
        h.record_polls([PollRow("sw", "site", 1.0, "ok"), PollRow("fw", "site", 1.0, "drift")])
        h.record_polls([PollRow("sw", "site", 2.25, "unreachable", "no answer", 0.5)])
        polls = h.last_polls()
        assert (polls["sw"].at, polls["sw"].status, polls["sw"].detail) == (
            2.25,
            "unreachable",
            "no answer",
        )
        assert polls["fw"].status == "drift"
