"""The outage tests' own PostgreSQL server (`tests/store/test_pg_outage.py`, `own_server`):
missing, it is a failure in CI (`CI=true`), as the shared server is (`tests/pgserver.py`), and a
loud skip elsewhere; never a silent skip of the lease and outage guarantees in CI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from tests.pgserver import PgUnavailable
from tests.store import test_pg_outage


def _missing() -> Path:
    raise PgUnavailable("no PostgreSQL server in /usr/lib/postgresql/*/bin (this test)")


def _outcome() -> BaseException:
    """What the fixture's own function raises (a fixture may not be called as one); a skip is
    caught here as a value, so that it cannot turn this test into a skip."""
    fixture = test_pg_outage.own_server.__wrapped__  # type: ignore[attr-defined]
    try:
        next(cast(Iterator[Any], fixture()))
    except BaseException as exc:
        return exc
    raise AssertionError("the fixture went on without a server")


def test_a_missing_server_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(test_pg_outage, "bin_dir", _missing)
    monkeypatch.setenv("CI", "true")
    got = _outcome()
    assert isinstance(got, pytest.fail.Exception), repr(got)
    assert "must run in CI: no PostgreSQL server" in str(got)


def test_a_missing_server_is_a_loud_skip_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(test_pg_outage, "bin_dir", _missing)
    monkeypatch.delenv("CI", raising=False)
    got = _outcome()
    assert isinstance(got, pytest.skip.Exception), repr(got)
    assert "SKIPPED POSTGRESQL TEST" in str(got)
