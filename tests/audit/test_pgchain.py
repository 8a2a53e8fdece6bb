"""The group's one audit chain in PostgreSQL (`agent.audit.pgchain`), on the real throwaway
cluster (tests/pgserver.py): appends from two nodes at once form one chain, an append by a node
that lost the lease is refused (and kept in its local log), the tables refuse UPDATE, DELETE and
TRUNCATE, and tampering by someone who gets past the trigger is found by `cordon audit verify`."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

import agent.audit as audit
from agent.audit.chain import finish
from agent.audit.pgchain import AuditFenced, PgChainWriter, connect, read_records
from agent.audit.seals import seal_head
from agent.audit.verify import verify_url
from agent.cli.commands.audit import audit as audit_group
from agent.engine.lease import Lease, Timing
from agent.errors import AuditError, ChainBroken
from tests.audit.conftest import PUBLIC_KEY, SEAL_KEY
from tests.pgserver import PgServer

PER_NODE = 150


def writer(url: str, node: str, epoch: int | None = None) -> PgChainWriter:
    return PgChainWriter(url, who=lambda: (node, epoch))


def invoke(*args: str) -> str:
    result = CliRunner().invoke(audit_group, list(args), standalone_mode=False)
    if result.exception is not None:
        raise result.exception
    return result.output


@pytest.fixture
def url(pg_server: PgServer) -> str:
    return pg_server.database()


@pytest.fixture
def pipeline(url: str, tmp_path: Path) -> Iterator[Path]:
    """The process's audit pipeline on the chain at `url` (local dir: `tmp_path/logs`)."""
    logs = tmp_path / "logs"
    audit.configure(logs, console=False, chain_url=url, seal_key="", seal_interval=0)
    try:
        yield logs
    finally:
        audit.close()
        audit.set_node(None, None)


def sql(url: str, statement: str, *args: Any, replica: bool = False) -> None:
    """As the cluster's superuser; `replica`: with triggers off, as a DBA could."""
    with psycopg.connect(url, autocommit=True) as db:
        if replica:
            db.execute("SET session_replication_role = replica")
        db.execute(statement, args)


def test_two_nodes_appending_at_once_make_one_chain(url: str) -> None:
    nodes = {name: writer(url, name) for name in ("node-a", "node-b")}
    start = threading.Barrier(len(nodes))
    errors: list[BaseException] = []

    def run(name: str) -> None:
        start.wait()
        try:
            for n in range(PER_NODE):
                nodes[name].append({"event": "device.change", "device": f"{name}-{n}", "n": n})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    seal_head(nodes["node-a"], reason="test", signer=SEAL_KEY)

    records = read_records(url)
    assert [r["seq"] for r in records] == list(range(1, 2 * PER_NODE + 1))
    per_node = Counter(r["writer"] for r in records)
    assert per_node == {"node-a": PER_NODE, "node-b": PER_NODE}
    devices = Counter(r["device"] for r in records)
    assert set(devices.values()) == {1} and len(devices) == 2 * PER_NODE  # none lost, none twice
    # the two writers interleaved: not one after the other
    switches = sum(1 for x, y in itertools.pairwise(records) if x["writer"] != y["writer"])
    print(f"{2 * PER_NODE} records from 2 writers, {switches} switches between them")
    result = verify_url(url, public_key=PUBLIC_KEY)
    assert result.verdict == "ok", result.findings
    assert (result.records, result.head_seq, result.anchored) == (2 * PER_NODE, 2 * PER_NODE, True)
    for w in nodes.values():
        w.close()


def test_two_processes_append_to_one_chain(url: str, tmp_path: Path) -> None:
    """Two real processes through the real pipeline (as two daemons would): one chain."""
    code = (
        "import sys, agent.audit as a\n"
        "a.configure(console=False, chain_url=sys.argv[1], seal_key='')\n"
        "a.set_node(sys.argv[2], None)\n"
        "log = a.get_logger()\n"
        "for n in range(int(sys.argv[3])): log.info('device.change', device=f'{sys.argv[2]}-{n}')\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, url, node, str(PER_NODE)],
            env={"PATH": "/usr/bin:/bin", "CORDON_LOG_DIR": str(tmp_path / node)},
        )
        for node in ("node-a", "node-b")
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    records = read_records(url)
    devices = Counter(r["device"] for r in records if r["event"] == "device.change")
    assert len(devices) == 2 * PER_NODE and set(devices.values()) == {1}
    assert Counter(r["writer"] for r in records) == {"node-a": PER_NODE, "node-b": PER_NODE}
    result = verify_url(url)  # each process sealed at its first record (if it was seq 1) and exit
    assert result.verdict == "ok", (result.findings, result.warnings)
    assert result.seals >= 2 and result.records == 2 * PER_NODE


def test_a_deposed_node_cannot_extend_the_chain(url: str) -> None:
    """The real lease (`agent.engine.lease`): node-a holds epoch 1, its lease runs out, node-b
    takes epoch 2; node-a, still claiming epoch 1, is refused and writes nothing."""
    timing = Timing(bound_s=0.3)  # lease 0.2 s
    lease_a, lease_b = Lease(url, "node-a", timing), Lease(url, "node-b", timing)
    try:
        assert lease_a.acquire() == 1
        a1, b = writer(url, "node-a", 1), writer(url, "node-b", None)
        a1.append({"event": "node.active", "node": "node-a", "epoch": 1})
        b.append({"event": "daemon.started"})  # a standby claims no epoch: accepted
        time.sleep(0.4)
        assert lease_b.acquire() == 2
        b2 = writer(url, "node-b", 2)
        b2.append({"event": "node.active", "node": "node-b", "epoch": 2})
        before = read_records(url)
        with pytest.raises(AuditFenced, match="held by node-b with epoch 2"):
            a1.append({"event": "device.change", "device": "fw1"})
        assert read_records(url) == before  # nothing written
        writer(url, "node-a", None).append({"event": "node.stepped_down", "epoch": 1})
        b2.append({"event": "step.started"})
    finally:
        lease_a.close()
        lease_b.close()
    records = read_records(url)
    assert [(r["event"], r["writer"], r["writer_epoch"]) for r in records] == [
        ("node.active", "node-a", 1),
        ("daemon.started", "node-b", None),
        ("node.active", "node-b", 2),
        ("node.stepped_down", "node-a", None),
        ("step.started", "node-b", 2),
    ]
    assert records[0]["epoch"] == 1  # the event's own field, beside the chain's writer_epoch
    b2.close()
    seal_head(a1, reason="test")
    assert verify_url(url).verdict == "ok"


def test_the_pipeline_keeps_a_refused_record_locally_and_raises(url: str, pipeline: Path) -> None:
    timing = Timing(bound_s=0.3)
    lease_a, lease_b = Lease(url, "node-a", timing), Lease(url, "node-b", timing)
    try:
        assert lease_a.acquire() == 1
        audit.set_node("node-a", 1)
        log = audit.get_logger()
        log.info("run.started", run_id="r1")
        time.sleep(0.4)
        assert lease_b.acquire() == 2
        with pytest.raises(AuditFenced):
            log.info("device.change", run_id="r1", device="fw1")
        audit.release_epoch(1)
        log.error("node.stepped_down", node="node-a", epoch=1)
    finally:
        lease_a.close()
        lease_b.close()
    events = [(r["event"], r["writer_epoch"]) for r in read_records(url)]
    assert events == [("run.started", 1), ("node.stepped_down", None)]
    audit.close()
    kept = [json.loads(x) for p in sorted(pipeline.glob("audit-*.jsonl")) for x in p.open()]
    assert [(r["event"], r["device"], r["writer_epoch"]) for r in kept] == [
        ("device.change", "fw1", 1)
    ]
    assert "lease is held by node-b with epoch 2" in kept[0]["refused"]
    assert audit.verify(pipeline).ok


def test_evidence_goes_to_the_chain_and_is_checked_there(url: str, pipeline: Path) -> None:
    digest = audit.store_evidence("hostname fw1\nset admin-password hunter2\n")
    audit.get_logger().info("device.change", device="fw1", config_after_sha256=digest)
    audit.seal("test")
    assert verify_url(url).verdict == "ok"
    sql(url, "UPDATE cordon_audit_evidence SET data = 'x'", replica=True)
    found = verify_url(url).findings
    assert [(f.kind, f.seq) for f in found] == [("evidence", 1)], found


def test_an_unreachable_store_raises_and_says_so(tmp_path: Path) -> None:
    gone = f"postgresql://cordon@/cordon?host={tmp_path}&port=1"
    log_dir = tmp_path / "logs"
    audit.configure(log_dir, console=False, chain_url=gone, seal_key="", seal_interval=0)
    try:
        with pytest.raises(AuditError) as caught:
            audit.get_logger().info("step.started", device="fw1")
        assert "cannot write the audit trail to PostgreSQL" in caught.value.message
        assert "sends nothing" in (caught.value.hint or "")
        assert "port=1" not in caught.value.message  # the URL's options are not echoed
    finally:
        audit.close()


def test_the_tables_refuse_update_delete_truncate(url: str) -> None:
    w = writer(url, "node-a")
    for n in range(3):
        w.append({"event": "device.change", "n": n})
    seal_head(w, reason="test")
    w.close()
    for statement in (
        "UPDATE cordon_audit SET line = line WHERE seq = 2",
        "DELETE FROM cordon_audit WHERE seq = 3",
        "TRUNCATE cordon_audit",
        "DELETE FROM cordon_audit_seals",
        "TRUNCATE cordon_audit_evidence",
    ):
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            sql(url, statement)
    assert len(read_records(url)) == 3
    assert verify_url(url).verdict == "ok"


def _chain(url: str, n: int) -> None:
    w = writer(url, "node-a")
    for i in range(1, n + 1):
        w.append({"event": "device.change", "device": f"sw{i}"})
    seal_head(w, reason="test", signer=SEAL_KEY)
    w.close()


def test_an_edit_past_the_trigger_is_found_by_audit_verify(url: str) -> None:
    _chain(url, 5)
    assert invoke("verify", url, "--public-key", _pub()).startswith("OK: postgresql://")
    sql(
        url,
        "UPDATE cordon_audit SET line = replace(line, '\"sw3\"', '\"sw9\"') WHERE seq = 3",
        replica=True,
    )
    with pytest.raises(ChainBroken, match=r"cordon_audit:3 \(seq 3\): edited"):
        invoke("verify", url, "--public-key", _pub())


def test_a_deleted_tail_is_found(url: str) -> None:
    _chain(url, 5)
    sql(url, "DELETE FROM cordon_audit WHERE seq >= 4", replica=True)
    kinds = {f.kind for f in verify_url(url, public_key=PUBLIC_KEY).findings}
    assert "truncated" in kinds  # by the head row and by the signed seal


def test_a_rehashed_chain_is_found_by_the_signed_seal(url: str) -> None:
    """Someone with the database but not the seal key rewrites record 2 and re-hashes every
    record after it, and the head row: the chain links, the signed seal does not match."""
    _chain(url, 4)
    records = read_records(url)
    prev = records[0]["hash"]
    for rec in records[1:]:
        body = {k: v for k, v in rec.items() if k != "hash"}
        if body["seq"] == 2:
            body["device"] = "forged"
        body["prev"] = prev
        line, prev = finish(body, ("seq", "prev", "ts", "file", "writer", "writer_epoch"))
        sql(
            url,
            "UPDATE cordon_audit SET line = %s WHERE seq = %s",
            line.decode(),
            body["seq"],
            replica=True,
        )
    sql(url, "UPDATE cordon_audit_head SET hash = %s", prev)
    unpinned = verify_url(url)
    assert {f.kind for f in unpinned.findings} == {"rewritten"}  # the seal's hash still differs
    pinned = verify_url(url, public_key=PUBLIC_KEY).findings
    assert [(f.kind, f.seq) for f in pinned] == [("rewritten", 4)], pinned


def test_an_epoch_going_back_is_found(url: str) -> None:
    """A record of epoch 1 after one of epoch 2 (what fencing forbids), forged with valid
    hashes: verify names it."""
    w2 = writer(url, "node-b", None)
    w2.append({"event": "daemon.started"})
    seal_head(w2, reason="test")
    w2.close()
    records = read_records(url)
    head = records[-1]
    for seq, (node, epoch) in enumerate((("node-b", 2), ("node-a", 1)), start=head["seq"] + 1):
        body = {
            "event": "device.change",
            "seq": seq,
            "prev": head["hash"],
            "ts": head["ts"],
            "file": "cordon_audit",
            "writer": node,
            "writer_epoch": epoch,
        }
        line, digest = finish(body, ("seq", "prev", "ts", "file", "writer", "writer_epoch"))
        sql(url, "INSERT INTO cordon_audit VALUES (%s, %s)", seq, line.decode())
        sql(url, "UPDATE cordon_audit_head SET seq = %s, hash = %s", seq, digest)
        head = {**body, "hash": digest}
    found = verify_url(url).findings
    assert [(f.kind, f.seq) for f in found] == [("fenced", 3)], found
    assert "epoch 1 after a record of epoch 2" in found[0].message


def test_verify_follows_the_state_url(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without PATH, `audit verify` checks the chain of $CORDON_STATE_URL when it is PostgreSQL."""
    _chain(url, 2)
    monkeypatch.setenv("CORDON_STATE_URL", url)
    out = invoke("verify")
    assert "2 record(s) in table cordon_audit, seq 1..2" in out


def _pub() -> str:
    from agent.audit.seals import public_key_text  # noqa: PLC0415

    return public_key_text(PUBLIC_KEY)


def test_a_connection_lost_while_idle_is_replaced_before_anything_is_written(url: str) -> None:
    """The server ended the writer's session (a restart, an administrator): the next append
    finds out at BEGIN, before writing, and goes through on a new connection, once."""
    w = writer(url, "node-a")
    w.append({"event": "daemon.started"})
    sql(url, "SELECT pg_terminate_backend(%s)", w._conn.info.backend_pid)
    w.append({"event": "daemon.warm"})
    seal_head(w, reason="test")
    w.close()
    assert [r["event"] for r in read_records(url)] == ["daemon.started", "daemon.warm"]
    assert verify_url(url).verdict == "ok"


def test_a_writer_frozen_inside_an_append_does_not_hold_the_chain(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """node-a stops (as under SIGSTOP) inside an append, holding the head row: the server ends
    its session after the idle timeout, node-b's append goes through, and node-a's write,
    when it wakes, fails (nothing of it is written)."""
    monkeypatch.setenv("CORDON_FAILOVER_S", "0.3")  # the timeout's floor: 2 s
    b = writer(url, "node-b")
    b.append({"event": "daemon.started"})
    frozen = connect(url)  # a writer's connection, configured as every writer's
    appended = threading.Event()

    def node_b() -> None:
        b.append({"event": "b"})
        appended.set()

    with (  # noqa: PT012
        pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout),
        frozen.transaction(),
    ):
        frozen.execute("SELECT seq FROM cordon_audit_head WHERE name = 'head' FOR UPDATE")
        t = threading.Thread(target=node_b)
        t.start()
        t.join(timeout=120)  # node-b waits for the server to end node-a's session
        assert appended.is_set()
        frozen.execute("INSERT INTO cordon_audit VALUES (99, 'x')")
    frozen.close()
    assert [(r["event"], r["writer"]) for r in read_records(url)] == [
        ("daemon.started", "node-b"),
        ("b", "node-b"),
    ]
    seal_head(b, reason="test")
    assert verify_url(url).verdict == "ok"


def test_a_writer_starved_inside_an_append_is_ended_and_tries_again(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first try sits idle past the timeout between its statements (a process starved of
    CPU): the server ends the session, the append runs again on a new connection; one record."""
    from agent.audit import pgchain  # noqa: PLC0415

    monkeypatch.setenv("CORDON_FAILOVER_S", "0.3")  # the timeout: 2 s
    tries = []

    def slow_finish(record: dict[str, Any], fields: Any) -> tuple[bytes, str]:
        tries.append(record["seq"])
        if len(tries) == 1:
            time.sleep(pgchain.idle_in_append_s() + 1.5)
        return finish(record, fields)

    monkeypatch.setattr(pgchain, "finish", slow_finish)
    w = writer(url, "node-a")
    w.append({"event": "daemon.started"})
    seal_head(w, reason="test")
    w.close()
    assert tries == [1, 1]
    assert [r["event"] for r in read_records(url)] == ["daemon.started"]
    assert verify_url(url).verdict == "ok"
