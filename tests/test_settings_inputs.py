"""Bad input in settings and on the command line (review 7, F1, F4, F9, F10): a state URL is
shown without its password everywhere (one redaction, `settings.redact_url`); a URL that does not
parse, or that carries a password however it is spelled, is a clear error naming the setting or
argument, exit 2, no traceback, nothing made; a port in Unicode digits is no port; a setting that
would be accepted and then ignored (CORDON_API_PIN without CORDON_API_URL) is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent import settings
from agent.api.tcp import host_port
from agent.audit import pgchain
from agent.audit.source import ChainSource
from agent.engine import store
from agent.errors import AuditError, ConfigError
from agent.view.server import listen_address
from tests.conftest import ROOT

SECRET = "s3cr3t-pw"


def _cordon(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CORDON_")}
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=ROOT,
        env={
            **base,
            "CORDON_STATE_DIR": str(tmp_path / "state"),
            "CORDON_LOG_DIR": str(tmp_path / "logs"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- F1: one redaction, never the password ------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"postgresql://cordon:{SECRET}@db.example:5433/x",
            "postgresql://cordon@db.example:5433/x",
        ),
        (f"postgresql://cordon@db/x?password={SECRET}", "postgresql://cordon@db/x"),
        (f"postgresql://:{SECRET}@db/x", "postgresql://@db/x"),
        (f"postgresql://u:{SECRET}@[::1/x", "postgresql://u@[::1/x"),  # does not parse
        (f"postgresql://u:p@{SECRET}@db/x", "postgresql://u@db/x"),  # an unencoded @
        ("postgresql:///cordon?host=/run/postgresql", "postgresql:///cordon"),
        ("postgresql+psycopg://cordon@db/x", "postgresql+psycopg://cordon@db/x"),
    ],
)
def test_every_redaction_drops_the_password_and_the_query(url: str, shown: str) -> None:
    assert settings.redact_url(url) == shown
    # the audit chain's, the stores' and the report's label are that one
    assert pgchain.redact_url(url) == store.redact(url) == shown
    assert ChainSource(url=url).label() == f"{shown} ({pgchain.TABLE})"


def test_an_unreadable_chain_names_the_database_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql://cordon:{SECRET}@/cordon?host={tmp_path}&port=5999"
    with pytest.raises(AuditError) as info:
        pgchain.snapshot(url)
    assert "postgresql://cordon@/cordon" in info.value.message
    assert SECRET not in info.value.message + (info.value.hint or "")


@pytest.mark.parametrize("as_json", [False, True])
def test_audit_verify_refuses_a_url_with_a_password_and_never_shows_it(
    tmp_path: Path, as_json: bool
) -> None:
    url = f"postgresql://cordon:{SECRET}@/cordon?host={tmp_path}&port=5999"
    done = _cordon("audit", "verify", url, *(["--json"] if as_json else []), tmp_path=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "audit chain URL postgresql://cordon@/cordon cannot be used" in done.stderr
    assert "contains a password" in done.stderr and "~/.pgpass" in done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "state").exists()


def test_audit_verify_of_a_url_that_does_not_parse_is_a_clear_error(tmp_path: Path) -> None:
    done = _cordon("audit", "verify", "postgresql://[::1/db", tmp_path=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "not a valid URL" in done.stderr and "Traceback" not in done.stderr


def test_audit_verify_still_reads_a_url_without_a_password(tmp_path: Path) -> None:
    """The check refuses what it must only: no server there is the chain's error (exit 7),
    naming the database."""
    url = f"postgresql://cordon@/cordon?host={tmp_path}&port=5999"
    done = _cordon("audit", "verify", url, tmp_path=tmp_path)
    assert done.returncode == 7, done.stderr
    assert "cannot read the audit chain at postgresql://cordon@/cordon" in done.stderr


# -- F4: CORDON_STATE_URL that does not parse, passwords however spelled -------------------------


@pytest.mark.parametrize(
    "raw",
    [
        f"postgresql://cordon@db/x?pass%77ord={SECRET}",  # libpq decodes the keyword
        f"postgresql://cordon@db/x?sslmode=require&sslpassword={SECRET}",
        f"postgresql://cordon@db/x?PASSWORD={SECRET}",
        f"postgresql://cordon@db/x?sslcert=a.pem&password=&x=1{SECRET}",  # an empty one too
        f"postgres://cordon:{SECRET}@db/x",
    ],
)
def test_a_password_however_spelled_is_refused_and_never_shown(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings.load({"CORDON_STATE_URL": raw})
    assert "CORDON_STATE_URL cannot be used: it contains a password" in info.value.message
    assert SECRET not in info.value.message + (info.value.hint or "")


def test_a_url_that_does_not_parse_is_a_settings_error() -> None:
    with pytest.raises(ConfigError, match="CORDON_STATE_URL cannot be used: not a valid URL"):
        settings.load({"CORDON_STATE_URL": "postgresql://[::1/db"})
    # a multi-host libpq URL is not refused for its ports (libpq reads them)
    url = "postgresql://cordon@db1:5432,db2:5433/cordon?target_session_attrs=read-write"
    assert settings.load({"CORDON_STATE_URL": url}).state_url == url


def test_a_state_url_that_does_not_parse_fails_a_command_cleanly(tmp_path: Path) -> None:
    done = _cordon("status", "--local", tmp_path=tmp_path, CORDON_STATE_URL="postgresql://[::1/db")
    assert done.returncode == 2, done.stderr
    assert "CORDON_STATE_URL cannot be used: not a valid URL" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "state").exists()


def test_is_url_never_raises() -> None:
    assert store.is_url("postgresql://[::1/db") and pgchain.is_url("POSTGRES://db/x")
    assert not store.is_url("/var/lib/cordon/journal.sqlite") and not pgchain.is_url(None)


@pytest.mark.parametrize("raw", [" postgresql://cordon@db/x", "\tpostgres://cordon@db/x"])
def test_a_url_the_stores_would_take_for_a_path_is_refused(raw: str) -> None:
    """The setting and the stores agree on what is a URL: none is accepted as one and then
    opened as a SQLite file of that name."""
    assert not store.is_url(raw)
    with pytest.raises(ConfigError, match="CORDON_STATE_URL cannot be used: not a postgresql"):
        settings.load({"CORDON_STATE_URL": raw})


# -- F9: a port in Unicode digits -----------------------------------------------------------------


# superscript two, Arabic-Indic 8600, fullwidth 8600: str.isdigit() is true for each
@pytest.mark.parametrize(
    "port", ["\u00b2", "\u0668\u0666\u0660\u0660", "\uff18\uff16\uff10\uff10", "1\u00b2"]
)
def test_a_port_in_other_digits_is_a_clear_error(port: str) -> None:
    with pytest.raises(ConfigError, match=r"the port must be 1-65535"):
        host_port(f"127.0.0.1:{port}", "CORDON_API_LISTEN", "hint")
    with pytest.raises(ConfigError, match=r"CORDON_VIEW_LISTEN=.*the port must be 1-65535"):
        listen_address(f"127.0.0.1:{port}")


# -- F10: CORDON_API_PIN without CORDON_API_URL -------------------------------------------------


def test_a_pin_without_a_url_is_refused_not_ignored(tmp_path: Path) -> None:
    pin = "sha256:" + "ab" * 32
    done = _cordon("status", tmp_path=tmp_path, CORDON_API_PIN=pin)
    assert done.returncode == 2, done.stderr
    assert "CORDON_API_PIN is set but CORDON_API_URL is not" in done.stderr
    assert "Traceback" not in done.stderr
    # with its URL the pin is used: no daemon there is the connection's error, not this one
    done = _cordon(
        "status", tmp_path=tmp_path, CORDON_API_PIN=pin, CORDON_API_URL="https://127.0.0.1:9"
    )
    assert "CORDON_API_PIN is set but" not in done.stderr
    assert "Traceback" not in done.stderr
