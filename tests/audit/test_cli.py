"""`cordon audit`: verify raises ChainBroken on tampering; seal and report work end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli.commands.audit import audit
from agent.errors import AuditError, ChainBroken
from tests.audit.conftest import lines_of, rewrite, write_log


def _invoke(*args: str) -> str:
    """Run the group as `agent.cli.main` does (errors propagate); return stdout."""
    runner = CliRunner()
    result = runner.invoke(audit, list(args), standalone_mode=False, catch_exceptions=False)
    return result.output


def test_verify_reports_ok(log_dir: Path) -> None:
    """On an untouched log, verify prints OK with the record count and the head."""
    write_log(log_dir, 5)
    out = _invoke("verify", str(log_dir))
    assert out.startswith(f"OK: {log_dir}: 5 record(s) in 1 file(s), seq 1..5, 1 seal(s)")
    assert "head: seq 5 " in out


def test_verify_raises_chain_broken_naming_the_record(log_dir: Path) -> None:
    """On a tampered log, verify raises ChainBroken (exit code 8) naming file, line and seq."""
    write_log(log_dir, 5)
    path = log_dir / "audit-2024-10-15.jsonl"
    lines = lines_of(path)
    lines[1] = lines[1].replace('"sw2"', '"sw9"')
    rewrite(path, lines)
    with pytest.raises(ChainBroken) as caught:
        _invoke("verify", str(log_dir))
    assert caught.value.exit_code == 8
    assert "audit-2024-10-15.jsonl:2 (seq 2): edited" in caught.value.message
    assert caught.value.hint


def test_verify_json_lists_findings(log_dir: Path) -> None:
    """--json prints the machine-readable result before failing."""
    write_log(log_dir, 5)
    path = log_dir / "audit-2024-10-15.jsonl"
    rewrite(path, lines_of(path)[:3])
    runner = CliRunner()
    result = runner.invoke(audit, ["verify", "--json", str(log_dir)], standalone_mode=False)
    assert isinstance(result.exception, ChainBroken)
    data = json.loads(result.output)
    assert data["ok"] is False
    assert data["findings"][0]["kind"] == "truncated"


def test_verify_defaults_to_the_environment_log_dir(
    log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without PATH, verify checks $CORDON_LOG_DIR."""
    write_log(log_dir, 2)
    monkeypatch.setenv("CORDON_LOG_DIR", str(log_dir))
    assert _invoke("verify").startswith(f"OK: {log_dir}: 2 record(s)")


def test_verify_missing_directory_is_an_audit_error(tmp_path: Path) -> None:
    """A path that does not exist is an AuditError (exit 7), not a broken chain."""
    with pytest.raises(AuditError) as caught:
        _invoke("verify", str(tmp_path / "nope"))
    assert type(caught.value) is AuditError


def test_seal_command_seals_the_head(log_dir: Path) -> None:
    """`audit seal` seals new records and says when there is nothing new."""
    write_log(log_dir, 4, seal=False)
    assert _invoke("seal", str(log_dir)).startswith("sealed seq 4 ")
    assert _invoke("seal", str(log_dir)).startswith("nothing to seal")


def test_report_command_renders_json(log_dir: Path) -> None:
    """`audit report --incident ... --format json` prints the report for that incident."""
    writer = write_log(log_dir, 2)
    writer.append({"event": "incident.declared", "incident_id": "inc-9", "actor": "lead"})
    out = _invoke(
        "report",
        "--incident",
        "inc-9",
        "--format",
        "json",
        "--log-dir",
        str(log_dir),
        "--at",
        "2024-10-15T04:00:00+00:00",
    )
    data = json.loads(out)
    assert data["incidents"][0]["declared_by"] == "lead"
    assert [c["status"] for c in data["incidents"][0]["clocks"]][:2] == ["due", "pending"]


def test_cordon_exits_8_and_names_the_record(log_dir: Path) -> None:
    """Through the real `cordon` entry point, a tampered log exits 8 with the record on stderr."""
    write_log(log_dir, 5)
    path = log_dir / "audit-2024-10-15.jsonl"
    lines = lines_of(path)
    del lines[2]
    rewrite(path, lines)
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "audit", "verify", str(log_dir)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 8, proc.stderr
    assert "audit-2024-10-15.jsonl:3 (seq 4): deleted: seq 3 missing" in proc.stderr
    assert proc.stdout.startswith("BROKEN:")
