"""`CORDON_STATE_URL`: a PostgreSQL URL with no password, or the error naming the variable
(never its value: it may hold the password); a server that is not there is a clear error naming
the store, not a traceback; the stores follow the setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent import settings
from agent.engine import journal
from agent.errors import ConfigError, DaemonError
from agent.service import health
from tests.conftest import ROOT
from tests.pgserver import PgServer


@pytest.mark.parametrize(
    "raw",
    [
        "postgresql://cordon:s3cr3t-pw@db.example/cordon",
        "postgresql://cordon@db.example/cordon?sslmode=require&password=s3cr3t-pw",
    ],
)
def test_a_password_in_the_url_is_refused_and_never_shown(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings.load({"CORDON_STATE_URL": raw})
    assert "CORDON_STATE_URL" in info.value.message
    assert "password" in info.value.message
    assert "s3cr3t-pw" not in info.value.message + (info.value.hint or "")


@pytest.mark.parametrize("raw", ["sqlite:///tmp/j.sqlite", "mysql://db/cordon", "/var/lib/x"])
def test_a_url_that_is_not_postgresql_is_refused(raw: str) -> None:
    with pytest.raises(ConfigError, match="CORDON_STATE_URL cannot be used: not a postgresql"):
        settings.load({"CORDON_STATE_URL": raw})


def test_a_postgresql_url_is_taken_as_given() -> None:
    url = "postgresql://cordon@/cordon?host=/run/postgresql&port=5433"
    assert settings.load({"CORDON_STATE_URL": url}).state_url == url
    assert settings.load({}).state_url is None


def test_the_cli_refuses_a_password_before_doing_anything(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CORDON_STATE_DIR": str(tmp_path),
        "CORDON_STATE_URL": "postgresql://cordon:s3cr3t-pw@/cordon",
    }
    done = subprocess.run(
        [sys.executable, "-m", "agent", "status", "--local"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "CORDON_STATE_URL" in done.stderr and "Traceback" not in done.stderr
    assert "s3cr3t-pw" not in done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing was made


def test_a_server_that_is_not_there_is_a_clear_error(tmp_path: Path) -> None:
    url = f"postgresql://cordon@/cordon?host={tmp_path}&port=5999"
    with pytest.raises(DaemonError, match=r"cannot connect to the journal at postgresql://"):
        journal.Journal(url)


def test_the_stores_follow_the_setting(
    pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`at(state_dir)`: the state directory's files without the setting; with it, the database
    (and no file in the directory)."""
    monkeypatch.delenv("CORDON_STATE_URL", raising=False)
    j, h = journal.at(tmp_path), health.at(tmp_path)
    assert (j.path, h.where) == (tmp_path / "journal.sqlite", str(tmp_path / "health.sqlite"))
    j.close()
    h.close()
    other = tmp_path / "other"
    other.mkdir()
    url = pg_server.database()
    monkeypatch.setenv("CORDON_STATE_URL", url)
    j, h = journal.at(other), health.at(other)
    assert j.path is None and j.where == url.split("?")[0] == h.where
    j.start_run("r", "pb", "L1", ["s"], "t")
    default = journal.Journal()  # the default is the setting's database
    assert default.locks() == {"s": "r"}
    default.close()
    j.close()
    h.close()
    assert list(other.iterdir()) == []
