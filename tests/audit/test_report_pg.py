"""The auditor's report and the regulators' drafts read the group's chain in PostgreSQL as they
read a log directory (`agent.audit.source`), on the real throwaway cluster (tests/pgserver.py).

The same records as the file fixtures' (tests/audit/test_record.py, test_config_diff.py) are
written into a PostgreSQL chain, chained and sealed there as a PostgreSQL chain is: the report
and the drafts built from it are the file goldens byte for byte once the volatile fields (the
chain's location, each record's hash, which covers the `file` it was written to) are named
alike. The configurations' blobs are read from the database's evidence table, and a record or
a blob edited past the table's trigger is said (ALTERED, CHAIN BROKEN) as for the files."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

import agent.audit as audit
from agent.audit import drafts
from agent.audit.chain import GENESIS, finish
from agent.audit.evidence import EVIDENCE_DIR
from agent.audit.pgchain import PG_CHAIN_FIELDS, TABLE, PgChainWriter, connect, read_records
from agent.audit.report import build, render
from agent.audit.seals import seal_head
from agent.audit.source import ChainSource, file_records
from agent.audit.verify import verify_url
from tests.audit import test_config_diff as config_case
from tests.audit import test_record as record_case
from tests.pgserver import PgServer

GOLDEN = Path(__file__).with_name("golden")
# the file chain's fields a PostgreSQL chain sets anew (its `ts` is kept: the same moments)
_REDONE = ("seq", "prev", "file", "hash")
crisis_log = record_case.crisis_log
config_log = config_case.config_log


@pytest.fixture
def url(pg_server: PgServer) -> str:
    return pg_server.database()


def copy_to_pg(log_dir: Path, url: str) -> dict[str, str]:
    """The file chain's records appended, in order, to a PostgreSQL chain at `url` as
    `PgChainWriter.append` makes them (chain fields, `writer`, `finish`), but at the moments the
    files hold; the evidence blobs into its table; the head sealed. Returns each PostgreSQL
    record's hash -> the file record's hash of the same seq."""
    conn = connect(url)  # the tables, as a first append makes them
    same: dict[str, str] = {}
    prev = GENESIS
    try:
        for seq, old in enumerate(file_records(log_dir), start=1):
            record = {k: v for k, v in old.items() if k not in _REDONE}
            record |= {"seq": seq, "prev": prev, "file": TABLE}
            record |= {"writer": "node-a", "writer_epoch": None}
            line, digest = finish(record, PG_CHAIN_FIELDS[:-1])
            conn.execute(
                "INSERT INTO cordon_audit (seq, line) VALUES (%s, %s)", (seq, line.decode())
            )
            conn.execute(
                "UPDATE cordon_audit_head SET seq = %s, hash = %s WHERE name = 'head'",
                (seq, digest),
            )
            same[digest], prev = old["hash"], digest
        for blob in sorted((log_dir / EVIDENCE_DIR).glob("*")):
            conn.execute(
                "INSERT INTO cordon_audit_evidence (sha256, data) VALUES (%s, %s)",
                (blob.name, blob.read_bytes()),
            )
    finally:
        conn.close()
    writer = PgChainWriter(url, who=lambda: ("node-a", None))
    try:
        seal_head(writer, reason="test")
    finally:
        writer.close()
    return same


def as_files(text: str, source: ChainSource, same: dict[str, str], log_dir: Path) -> str:
    """`text` with the PostgreSQL chain's location and hashes named as the files' are."""
    text = text.replace(source.label(), str(log_dir))
    return re.sub(r"[0-9a-f]{64}", lambda m: same.get(m.group(0), m.group(0)), text)


def sql(url: str, statement: str, *args: Any) -> None:
    """As a DBA who turned the append-only trigger off could."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("SET session_replication_role = replica")
        db.execute(statement, args)


# -- the same facts as from the files ------------------------------------------------------------


def test_the_copy_is_a_valid_postgresql_chain(crisis_log: Path, url: str) -> None:
    """The fixture's own check: what it wrote verifies as a PostgreSQL chain, record for
    record the files' (else the comparisons below prove nothing)."""
    copy_to_pg(crisis_log, url)
    result = verify_url(url)
    assert result.verdict == "ok", result.findings
    files = file_records(crisis_log)
    assert [r["event"] for r in read_records(url)] == [r["event"] for r in files]
    assert result.records == len(files)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("record.txt", lambda where, v: render(_report(where, v), "text")),
        ("record.md", lambda where, v: render(_report(where, v), "md")),
        ("draft-ars.txt", lambda where, v: drafts.render(_draft(where, "ars", v), "text")),
        (
            "draft-nis2-final.md",
            lambda where, v: drafts.render(_draft(where, "nis2-final", v), "md"),
        ),
    ],
)
def test_report_and_drafts_from_postgresql_are_the_file_goldens(
    crisis_log: Path, url: str, name: str, make: Any
) -> None:
    same = copy_to_pg(crisis_log, url)
    source = ChainSource.of(url)
    text = make(source, source.verify())
    assert "postgresql://" in text  # it says where it read
    assert as_files(text, source, same, crisis_log).replace(str(crisis_log), "<LOG>") == (
        GOLDEN / name
    ).read_text(encoding="utf-8")


def _report(where: ChainSource, integrity: Any) -> Any:
    """As test_record's `_report`, of `where`."""
    return build(
        where, incident="INC-1", integrity=integrity, now=record_case.T0 + timedelta(hours=2)
    )


def _draft(where: ChainSource, kind: str, integrity: Any) -> drafts.Draft:
    return drafts.draft(kind, where, integrity=integrity, now=record_case.T0 + timedelta(hours=2))


@pytest.mark.parametrize("fmt", ["txt", "md", "html"])
def test_config_diffs_read_the_evidence_from_the_database(
    config_log: Path, url: str, fmt: str
) -> None:
    """The diffs are the files' golden; the blobs come from `cordon_audit_evidence` (the
    report says so, and reads no directory: there is none for this chain)."""
    same = copy_to_pg(config_log, url)
    source = ChainSource.of(url)
    report = build(
        source,
        run=config_case.RUN,
        integrity=source.verify(),
        now=config_case.T0 + timedelta(hours=1),
    )
    assert not any(c.problems for c in report.configs)
    text = render(report, "text" if fmt == "txt" else fmt)
    assert "table cordon_audit_evidence" in text
    golden = (GOLDEN / f"config.{fmt}").read_text(encoding="utf-8")
    in_files = "evidence/sha256/<sha256> under the log directory"
    if fmt == "html":
        in_files = (
            '<span class="mono">evidence/sha256/&lt;sha256&gt;</span> under the log directory'
        )
        text = text.replace(
            '<span class="mono">table cordon_audit_evidence, by sha256, in the state database'
            "</span>",
            in_files,
        )
    else:
        text = text.replace(
            "table cordon_audit_evidence, by sha256, in the state database", in_files
        )
    assert as_files(text, source, same, config_log).replace(str(config_log), "<LOG>") == golden


def test_an_altered_blob_in_the_database_is_said_never_shown(config_log: Path, url: str) -> None:
    copy_to_pg(config_log, url)
    fw_after = next(
        r
        for r in read_records(url)
        if r.get("device") == "rns-fw1" and r["event"] == "config.after"
    )
    sql(
        url,
        "UPDATE cordon_audit_evidence SET data = %s WHERE sha256 = %s",
        b"table inet filter {}\n",
        fw_after["config_sha256"],
    )
    report = build(url, run=config_case.RUN, integrity=verify_url(url))
    fw = next(c for c in report.configs if c.change.device == "rns-fw1")
    assert fw.diff == ()
    assert "the after snapshot sha256" in fw.verdict
    assert "was altered" in fw.verdict
    assert not report.chain.ok  # the verifier found it too


# -- tampering -----------------------------------------------------------------------------------


def test_a_tampered_postgresql_record_is_flagged_altered_and_the_chain_broken(
    crisis_log: Path, url: str
) -> None:
    """Edited past the trigger: the record no longer hashes to its hash (ALTERED in "Records
    cited"), and the verifier breaks the chain at it (CHAIN BROKEN at the top), as in files."""
    copy_to_pg(crisis_log, url)
    declared = next(r for r in read_records(url) if r["event"] == "incident.declared")
    sql(
        url,
        "UPDATE cordon_audit SET line = replace(line, 'ransom note', 'nothing much') "
        "WHERE seq = %s",
        declared["seq"],
    )
    source = ChainSource.of(url)
    report = build(source, incident="INC-1", integrity=source.verify())
    assert [c.seq for c in report.altered] == [declared["seq"]]
    text = render(report, "text")
    assert "Integrity: CHAIN BROKEN:" in text
    assert f"cordon_audit:{declared['seq']}" in text
    assert "ALTERED RECORDS: 1 record(s)" in text
    assert "ALTERED: its content no longer hashes to it" in text
    ars = drafts.render(drafts.draft("ars", source, integrity=source.verify()), "text")
    assert "LA CHAÎNE D'AUDIT NE SE VÉRIFIE PAS" in ars


# -- the commands and the service ----------------------------------------------------------------


def cordon(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return record_case.cordon(capsys, *args)


def test_the_commands_read_the_state_url_chain_and_log_dir_forces_files(
    crisis_log: Path,
    url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    copy_to_pg(crisis_log, url)
    monkeypatch.setenv("CORDON_STATE_URL", url)
    monkeypatch.setenv("CORDON_LOG_DIR", str(tmp_path / "empty-logs"))
    code, out, err = cordon(capsys, "audit", "report", "--incident", "INC-1")
    assert code == 0, err
    assert f"(log {ChainSource.of(url).label()})" in out
    assert "Incident INC-1 (ransomware-rennes)" in out
    code, out, err = cordon(capsys, "incident", "draft", "--for", "nis2-early")
    assert code == 0, err
    assert f"Audit log: {ChainSource.of(url).label()}" in out
    code, out, err = cordon(
        capsys, "audit", "report", "--incident", "INC-1", "--log-dir", str(crisis_log)
    )
    assert code == 0, err
    assert f"(log {crisis_log})" in out
    # a tampered database chain: written, then exit 8, as for files
    sql(url, "UPDATE cordon_audit SET line = replace(line, 'PSIG-42', 'PSIG-43')")
    code, out, err = cordon(capsys, "audit", "report", "--incident", "INC-1")
    assert code == 8
    assert "Integrity: CHAIN BROKEN:" in out
    assert "audit chain broken: first bad record at cordon_audit:" in err


@pytest.fixture
def pg_pipeline(url: str, tmp_path: Path) -> Iterator[Path]:
    logs = tmp_path / "logs"
    audit.configure(logs, console=False, chain_url=url, seal_key="", seal_interval=0)
    try:
        yield logs
    finally:
        audit.close()


def test_the_service_reports_the_database_chain(
    url: str, pg_pipeline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Service.audit_report` (the API's and the view's report) reads the chain this daemon
    writes to: on PostgreSQL, the database's records, not the (empty) local log directory."""
    from agent.service.service import Service  # noqa: PLC0415

    monkeypatch.setenv("CORDON_STATE_URL", url)
    example = Path(__file__).resolve().parents[2] / "inventory" / "hospi-grand-ouest.yaml"
    svc = Service(example, tmp_path / "state", scheduler=False)
    try:
        opened = svc.incident(None, action="open", name="pg-case", site=None, reason="test")
        iid = opened["incident_id"]
        svc.notify(None, incident=iid, kind="ars", to="ARS", ref="A-1", at=None, by=None)
        rep = svc.audit_report(None, run=None, incident=iid)
    finally:
        svc.stop()
    in_db = [r for r in read_records(url) if r.get("incident_id") == iid]
    assert [e["event"] for e in in_db] == ["incident.declared", "regulatory.notified"]
    assert [(t["seq"], t["event"]) for t in rep["timeline"]] == [
        (r["seq"], r["event"]) for r in in_db
    ]
    assert rep["log_dir"] == ChainSource.of(url).label()
    assert rep["incidents"][0]["name"] == "pg-case"
    assert not list(pg_pipeline.glob("audit-*.jsonl"))  # nothing there to have read
    assert file_records(pg_pipeline) == []


def test_the_label_names_the_database_never_its_password() -> None:
    """A report is filed and sent: the header names the database, not the password in the URL
    nor the libpq options of its query."""
    where = ChainSource.of("postgresql://cordon:s3cret@db.example:5432/cordon?sslkey=/k&x=1")
    assert where.label() == "postgresql://cordon@db.example:5432/cordon (cordon_audit)"
    assert ChainSource.of("postgres://db/c").label() == "postgres://db/c (cordon_audit)"
    assert ChainSource.of(Path("logs")).label() == "logs"
    assert not ChainSource.of(Path("logs")).in_database
