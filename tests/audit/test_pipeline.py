"""The structlog pipeline: schema, context, redaction, console, evidence, configuration."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest

import agent.audit as audit
from agent.audit.pipeline import EVENT_FIELDS, current_log_dir, default_log_dir


def _records(log_dir: Path) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for path in sorted(log_dir.glob("audit-*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def test_every_event_carries_the_schema(pipeline: Path) -> None:
    """Each record has ts, event, level, the standard fields (null if unset), host, pid, chain."""
    audit.get_logger().info("run.started")
    (record,) = _records(pipeline)
    assert set(EVENT_FIELDS) <= set(record)
    assert all(record[name] is None for name in EVENT_FIELDS)
    assert record["event"] == "run.started"
    assert record["level"] == "info"
    assert record["pid"] == os.getpid()
    assert datetime.fromisoformat(str(record["ts"])).utcoffset() is not None
    assert str(record["ts"]).endswith("+00:00")
    assert {"seq", "prev", "hash", "host"} <= set(record)


def test_bound_context_reaches_every_event(pipeline: Path) -> None:
    """Fields bound with `bind` and `get_logger` appear in the events logged inside the block."""
    log = audit.get_logger(site="rennes")
    with audit.bind(run_id="r-1", incident_id="inc-1", actor="alice", role="oncall"):
        log.info("step.started", device="sw1", action="port.shutdown")
        with audit.bind(device="sw2"):
            log.warning("step.failed", outcome="failed", duration_s=1.5)
    log.info("run.finished")
    first, second, third = _records(pipeline)
    assert (first["run_id"], first["actor"], first["role"], first["site"]) == (
        "r-1",
        "alice",
        "oncall",
        "rennes",
    )
    assert (second["device"], second["level"], second["duration_s"]) == ("sw2", "warning", 1.5)
    assert (third["run_id"], third["site"]) == (None, "rennes")


def test_secrets_never_reach_the_log(pipeline: Path) -> None:
    """Registered secrets, secret-named keys and CLI idioms are all masked in the file."""
    audit.register_secret("P1peline-S3cret")
    audit.get_logger().info(
        "device.change",
        password="Anoth3r-Secret",
        commands=["snmp-server community C0mmun1ty RO"],
        note="resolved P1peline-S3cret",
    )
    data = (pipeline / next(p.name for p in pipeline.glob("audit-*.jsonl"))).read_text()
    for secret in ("P1peline-S3cret", "Anoth3r-Secret", "C0mmun1ty"):
        assert secret not in data
    assert audit.verify(pipeline).ok


def test_secret_named_keys_are_masked_by_the_pipeline(pipeline: Path) -> None:
    """Values under secret-named keys are masked even when nothing else looks like a secret."""
    audit.get_logger().info(
        "access.granted", credential="Cr3d-Value", session_cookie="C00kie-Value", params={"x": 1}
    )
    (record,) = _records(pipeline)
    assert (record["credential"], record["session_cookie"]) == ("[REDACTED]", "[REDACTED]")


def test_exceptions_are_logged_as_scrubbed_text(pipeline: Path) -> None:
    """`log.exception` stores the traceback as text, secrets removed."""
    audit.register_secret("Tr4ceback-S3cret")
    try:
        raise RuntimeError("login failed for Tr4ceback-S3cret")
    except RuntimeError:
        audit.get_logger().exception("step.failed")
    (record,) = _records(pipeline)
    assert "RuntimeError: login failed for [REDACTED]" in str(record["exception"])


def test_console_renders_on_stderr_when_enabled(
    log_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With console on, a readable line goes to stderr and nothing to stdout."""
    audit.configure(log_dir, console=True, seal_interval=0)
    try:
        audit.get_logger().info("device.verify", device="sw1", outcome="ok")
    finally:
        audit.close()
    out, err = capsys.readouterr()
    assert out == ""
    assert "device.verify" in err
    assert "device" in err
    assert "sw1" in err


def test_console_is_quiet_when_disabled(pipeline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With console off, logging writes nothing to stdout or stderr."""
    audit.get_logger().info("device.verify", device="sw1")
    assert capsys.readouterr() == ("", "")


def test_configure_is_idempotent(pipeline: Path) -> None:
    """Configuring again with the same arguments keeps the chain and writes no seal.

    (The first record of a new chain is sealed at once; nothing else is.)
    """
    audit.get_logger().info("a")
    audit.configure(pipeline, console=False, seal_interval=0)
    audit.get_logger().info("b")
    assert [r["seq"] for r in _records(pipeline)] == [1, 2]
    seals = (pipeline / "seals.jsonl").read_text().splitlines()
    assert [json.loads(s)["reason"] for s in seals] == ["first"]


def test_reconfiguring_seals_the_previous_log(pipeline: Path, tmp_path: Path) -> None:
    """Switching to another directory seals the previous log's head first."""
    audit.get_logger().info("a")
    audit.configure(tmp_path / "other", console=False, seal_interval=0)
    assert json.loads((pipeline / "seals.jsonl").read_text())["seq"] == 1
    assert current_log_dir() == tmp_path / "other"


def test_close_seals_the_head(pipeline: Path) -> None:
    """Closing the pipeline seals what was appended, so a cut tail is detectable."""
    audit.get_logger().info("a")
    audit.get_logger().info("b")
    audit.close()
    assert json.loads((pipeline / "seals.jsonl").read_text().splitlines()[-1])["seq"] == 2


def test_default_log_dir_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """$CORDON_LOG_DIR wins; without it the default is ./logs."""
    monkeypatch.setenv("CORDON_LOG_DIR", str(tmp_path / "env"))
    assert default_log_dir() == tmp_path / "env"
    monkeypatch.delenv("CORDON_LOG_DIR")
    monkeypatch.chdir(tmp_path)
    assert default_log_dir() == tmp_path / "logs"


def test_evidence_is_scrubbed_stored_and_verified(pipeline: Path) -> None:
    """store_evidence keeps a scrubbed copy under its sha256, and verify checks it."""
    audit.register_secret("Ev1dence-S3cret")
    config = "hostname sw1\nusername ops secret Ev1dence-S3cret\n"
    digest = audit.store_evidence(config)
    audit.get_logger().info("device.change", device="sw1", config_before_sha256=digest)
    blob = pipeline / "evidence" / "sha256" / digest
    assert blob.read_text() == "hostname sw1\nusername ops secret [REDACTED]\n"
    assert audit.store_evidence(config) == digest
    assert audit.verify(pipeline).ok
    blob.unlink()
    assert [f.kind for f in audit.verify(pipeline).findings] == ["evidence"]
