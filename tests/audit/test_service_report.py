"""`Service.audit_report` (the API's and the live view's report) verifies the chain it reads, as
`cordon audit report` does, on both backends (a log directory's files; the group's chain in
PostgreSQL, on the real throwaway cluster): verified with its head, or broken and where. And a
report from PostgreSQL verifies and reads ONE snapshot, fetching evidence blobs by sha256 only
for the sections that show them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import agent.audit as audit
from agent.audit.pgchain import PgChainWriter, PgSnapshot, read_records
from agent.audit.report import build
from agent.audit.source import ChainSource, file_records
from agent.errors import AuditError
from agent.service.service import Service
from tests.audit import test_config_diff as config_case
from tests.audit.test_report_pg import copy_to_pg, sql
from tests.pgserver import PgServer

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory" / "hospi-grand-ouest.yaml"
config_log = config_case.config_log


@pytest.fixture(params=["files", "postgresql"])
def chain(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Path, str | None]]:
    """The audit pipeline writing to a log directory, or to a PostgreSQL chain (the state
    there too): (backend, log directory, URL or None)."""
    logs = tmp_path / "logs"
    url: str | None = None
    if request.param == "postgresql":
        server: PgServer = request.getfixturevalue("pg_server")
        url = server.database()
        monkeypatch.setenv("CORDON_STATE_URL", url)
    else:
        monkeypatch.delenv("CORDON_STATE_URL", raising=False)
    monkeypatch.delenv("CORDON_AUDIT_SEAL_PUBKEY", raising=False)
    audit.configure(logs, console=False, chain_url=url, seal_key="", seal_interval=0)
    try:
        yield request.param, logs, url
    finally:
        audit.close()


def _tamper(backend: str, logs: Path, url: str | None, seq: int) -> str:
    """Edit record `seq` as someone with write access to the store could; where it now is."""
    if backend == "postgresql":
        assert url is not None
        sql(url, "UPDATE cordon_audit SET line = replace(line, 'A-1', 'A-2') WHERE seq = %s", seq)
        return f"cordon_audit:{seq}"
    for path in sorted(logs.glob("audit-*.jsonl")):
        lines = path.read_bytes().splitlines(keepends=True)
        for n, line in enumerate(lines):
            if json.loads(line).get("seq") == seq:
                lines[n] = line.replace(b"A-1", b"A-2")
                path.write_bytes(b"".join(lines))
                return f"{path.name}:{n + 1}"
    raise AssertionError(f"no record seq {seq} in {logs}")


def test_the_service_report_is_verified_then_says_where_the_chain_breaks(
    chain: tuple[str, Path, str | None], tmp_path: Path
) -> None:
    backend, logs, url = chain
    svc = Service(EXAMPLE, tmp_path / "state", scheduler=False)
    try:
        opened = svc.incident(None, action="open", name="case", site=None, reason="test")
        iid = opened["incident_id"]
        svc.notify(None, incident=iid, kind="ars", to="ARS", ref="A-1", at=None, by=None)
        good = svc.audit_report(None, run=None, incident=iid)
        records = read_records(url) if url else file_records(logs)
        notified = next(r for r in records if r["event"] == "regulatory.notified")
        where = _tamper(backend, logs, url, notified["seq"])
        bad = svc.audit_report(None, run=None, incident=iid)
        unverified = svc.audit_report(None, run=None, incident=iid, verify=False)  # the view's
    finally:
        svc.stop()
    assert good["chain"]["ok"] is True
    assert good["chain"]["verdict"] in ("ok", "unsealed")
    assert good["chain"]["summary"].startswith("chain verified: ")
    assert good["integrity"] == {"ok": True, "summary": good["chain"]["summary"]}
    head = max(r["seq"] for r in records)
    assert good["chain"]["head_seq"] >= head  # every record up to the report's own read
    assert bad["chain"]["ok"] is False
    assert bad["chain"]["verdict"] == "broken"
    assert bad["integrity"]["ok"] is False
    assert bad["chain"]["summary"].startswith("CHAIN BROKEN: ")
    assert where in bad["chain"]["summary"]  # where: the table and seq, or the file and line
    assert unverified["chain"]["verdict"] == "not verified"  # said, never "verified"
    assert unverified["timeline"] == bad["timeline"]
    assert bad["log_dir"] == (ChainSource.of(url).label() if url else str(logs))


# -- one snapshot, blobs by digest --------------------------------------------------------------


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every evidence digest asked of the server (streamed for the verifier, or one blob for a
    report section), in order."""
    seen: list[str] = []
    one: Callable[[PgSnapshot, str], bytes | None] = PgSnapshot.evidence_data
    many: Callable[[PgSnapshot, Iterable[str]], None] = PgSnapshot.check_evidence

    def spy_one(self: PgSnapshot, digest: str) -> bytes | None:
        seen.append(digest)
        return one(self, digest)

    def spy_many(self: PgSnapshot, digests: Iterable[str]) -> None:
        asked = sorted(set(digests))
        seen.extend(asked)
        many(self, asked)

    monkeypatch.setattr(PgSnapshot, "evidence_data", spy_one)
    monkeypatch.setattr(PgSnapshot, "check_evidence", spy_many)
    return seen


def _digests(records: list[dict[str, Any]]) -> set[str]:
    return {
        v for r in records for k, v in r.items() if k.endswith("_sha256") and isinstance(v, str)
    }


def test_a_postgresql_report_verifies_and_reads_one_snapshot_blobs_by_digest(
    config_log: Path, pg_server: PgServer, fetched: list[str]
) -> None:
    url = pg_server.database()
    copy_to_pg(config_log, url)
    # a blob nobody cites: never fetched (the old read loaded the whole table, twice)
    sql(url, "INSERT INTO cordon_audit_evidence VALUES (%s, %s)", "0" * 64, b"x" * 100_000)
    source = ChainSource.of(url)
    writer = PgChainWriter(url, who=lambda: ("node-b", None))
    try:
        with source.open(verify=True) as read:
            # appended after the snapshot began: neither the verification nor the report sees it
            writer.append({"event": "test.later", "ts": "2024-10-15T05:00:00+00:00"})
            integrity = read.integrity
            assert integrity is not None
            verified = list(fetched)
            report = build(read, run=config_case.RUN, now=config_case.T0 + timedelta(hours=1))
    finally:
        writer.close()
    records = read_records(url)
    assert records[-1]["event"] == "test.later"
    assert integrity.ok, integrity.findings
    assert integrity.records == len(records) - 1 == len(read.records)
    assert report.chain.head_seq == records[-2]["seq"]
    cited = _digests(records)
    assert sorted(verified) == sorted(cited)  # each cited blob hashed once by the verifier
    pairs = [(c.change.before_sha256, c.change.after_sha256) for c in report.configs]
    shown = [d for b, a in pairs if b and a for d in (b, a)]  # a diff needs both
    assert shown and sorted(fetched[len(verified) :]) == sorted(shown)  # the diffs' blobs only
    assert "0" * 64 not in fetched
    assert not any(c.problems for c in report.configs)


def test_a_blob_asked_for_after_the_snapshot_is_an_error_not_a_guess(
    config_log: Path, pg_server: PgServer
) -> None:
    url = pg_server.database()
    copy_to_pg(config_log, url)
    with ChainSource.of(url).open() as read:
        digest = sorted(_digests(read.records))[0]
        assert read.blob(digest)[0] is not None
    with pytest.raises(AuditError, match="inside its snapshot only"):
        read.blob(digest)
