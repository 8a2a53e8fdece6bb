"""The health store carries its schema version: a file written by the release before it opens
with its alarms and polls, migrated; a newer release's file is refused untouched."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from agent.errors import DaemonError
from agent.service.health import SCHEMA_VERSION, HealthStore

TODAY = Path(__file__).parent / "data" / "health-v0.sqlite"  # written by the release before #12


def _user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def test_a_health_store_written_by_the_previous_release_opens_migrated(tmp_path: Path) -> None:
    """The kept store (an open re-applied alarm, a cleared one, two polls) reads back as written
    and is stamped with the current schema version."""
    path = tmp_path / "health.sqlite"
    shutil.copyfile(TODAY, path)
    assert _user_version(path) == 0
    with HealthStore(path) as h:
        (alarm,) = h.open_alarms("nts-sw1")
        assert (alarm.kind, alarm.subject, alarm.reapplied) == ("interface_up", "Gi1/0/3", 1)
        assert [a.kind for a in h.alarms(status="cleared")] == ["table_missing"]
        assert {d: p.status for d, p in h.last_polls().items()} == {
            "nts-fw1": "ok",
            "nts-sw1": "drift",
        }
    assert _user_version(path) == SCHEMA_VERSION


def test_a_health_store_from_a_newer_release_is_refused_untouched(tmp_path: Path) -> None:
    """A schema version this release does not know: refused naming the file; nothing changed."""
    path = tmp_path / "health.sqlite"
    shutil.copyfile(TODAY, path)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    before = path.read_bytes()
    with pytest.raises(DaemonError, match=rf"{path}.*newer Cordon"):
        HealthStore(path)
    assert path.read_bytes() == before
