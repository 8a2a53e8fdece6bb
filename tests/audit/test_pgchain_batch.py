"""Group commit on the PostgreSQL chain (`PgChainWriter.append`), on the real throwaway cluster:
records appended by threads of one process at once go in one transaction, each chained to the
one before; a batch that fails leaves nothing of it; a deposed node's batch is refused whole.

To make a batch for sure, another session holds the head row: the first thread's transaction
waits for it, the others queue behind; when the head is released, they go in one transaction."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

import agent.audit as audit
from agent.audit.pgchain import AuditFenced, PgChainWriter, read_records
from agent.audit.seals import seal_head
from agent.audit.verify import verify_url
from agent.engine.lease import Lease, Timing
from agent.errors import AuditError
from tests.pgserver import PgServer

THREADS = 8


@pytest.fixture
def url(pg_server: PgServer) -> str:
    return pg_server.database()


def writer(url: str, node: str, epoch: int | None = None) -> PgChainWriter:
    return PgChainWriter(url, who=lambda: (node, epoch))


def _until(what: Callable[[], bool], about: str) -> None:
    """Wait for `what` (a state of the other threads, not a time: the deadline only ends a hung
    test)."""
    deadline = time.monotonic() + 120
    while not what():
        assert time.monotonic() < deadline, f"never happened: {about}"
        time.sleep(0.01)


def behind_a_locked_head(
    url: str,
    w: PgChainWriter,
    events: list[dict[str, Any]],
    meanwhile: Callable[[psycopg.Connection[Any]], None] | None = None,
) -> list[Any]:
    """Append `events`, one thread each, while another session holds the head row: the first
    waits in its transaction, the rest queue (one batch). `meanwhile(session)` runs in the
    holding transaction before it commits. Each thread's record or exception, in order."""
    assert w._conn is not None, "append once first (the connection and the tables)"
    pid = w._conn.info.backend_pid
    results: list[Any] = [None] * len(events)

    def run(i: int) -> None:
        try:
            results[i] = w.append(events[i])
        except BaseException as exc:  # the test reads it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(events))]
    with psycopg.connect(url) as holder:  # a transaction until the block ends
        holder.execute("SELECT seq FROM cordon_audit_head WHERE name = 'head' FOR UPDATE")
        threads[0].start()
        with psycopg.connect(url, autocommit=True) as look:
            _until(
                lambda: (
                    look.execute(
                        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
                    ).fetchone()
                    == ("Lock",)
                ),
                "the first append waits for the head row",
            )
        for t in threads[1:]:
            t.start()
        _until(lambda: len(w._queue) == len(events) - 1, "the others queued")
        if meanwhile is not None:
            meanwhile(holder)
    for t in threads:
        t.join()
    return results


def test_threads_appending_at_once_share_transactions_in_one_chain(url: str) -> None:
    w = writer(url, "node-a")
    w.append({"event": "daemon.started"})
    events = [{"event": "device.change", "device": f"fw{n}"} for n in range(THREADS)]
    results = behind_a_locked_head(url, w, events)
    assert [type(r) for r in results] == [dict] * THREADS
    assert w.batches == 3 and w.appended == 1 + THREADS  # 1, then 1 (held), then 7 at once
    # a lone run of threads, free: every record once, whatever the batches
    free = [f"sw{n}" for n in range(THREADS * 25)]

    def run(mine: list[str]) -> None:
        for device in mine:
            w.append({"event": "device.change", "device": device})

    threads = [threading.Thread(target=run, args=(free[i::THREADS],)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seal_head(w, reason="test")
    w.close()
    records = read_records(url)
    assert [r["seq"] for r in records] == list(range(1, 2 + THREADS + len(free)))
    devices = Counter(r.get("device") for r in records[1:])
    assert set(devices) == {e["device"] for e in events} | set(free)
    assert set(devices.values()) == {1}  # none lost, none twice
    # the held batch: its records in queue order, one after the other, one transaction's ts
    batch = records[2 : 2 + THREADS - 1]
    assert [r["device"] for r in batch] == [r["device"] for r in results[1:]]
    assert len({r["ts"] for r in batch}) == 1
    assert all(r["prev"] == p["hash"] for p, r in itertools.pairwise(records))
    result = verify_url(url)
    assert result.verdict == "ok", result.findings
    assert result.records == len(records)
    print(f"{len(free)} records by {THREADS} threads in {w.batches - 3} transactions")


def test_a_batch_failing_midway_leaves_nothing_of_it(url: str) -> None:
    """The batch's third row collides with a row someone put there: the insert fails, so no
    record of the batch is written (not the two before it), the head does not move, and every
    thread of the batch gets the error."""
    w = writer(url, "node-a")
    w.append({"event": "daemon.started"})  # seq 1

    def intrude(holder: psycopg.Connection[Any]) -> None:
        # the held batch is seq 2 (the first thread), then 3.. for the queued ones: take 5
        holder.execute("INSERT INTO cordon_audit (seq, line) VALUES (5, 'someone')")

    events = [{"event": "device.change", "device": f"fw{n}"} for n in range(5)]
    results = behind_a_locked_head(url, w, events, intrude)
    assert isinstance(results[0], dict) and results[0]["seq"] == 2
    for r in results[1:]:
        assert isinstance(r, AuditError) and not isinstance(r, AuditFenced)
        assert "UniqueViolation" in r.message and "PostgreSQL" in r.message
    assert len({id(r) for r in results[1:]}) == 4  # each caller its own exception
    with psycopg.connect(url, autocommit=True) as db:
        rows = db.execute("SELECT seq, line FROM cordon_audit ORDER BY seq").fetchall()
        head = db.execute("SELECT seq, hash FROM cordon_audit_head").fetchone()
    assert [seq for seq, _ in rows] == [1, 2, 5]
    assert head == (2, results[0]["hash"])
    # the writer goes on from the head
    assert w.append({"event": "after"})["seq"] == 3
    w.close()


def test_a_deposed_nodes_batch_is_refused_whole(url: str) -> None:
    """node-a, still claiming epoch 1 after node-b took epoch 2, appends from several threads
    at once: every record of the batch is refused (`AuditFenced`), none written."""
    timing = Timing(bound_s=0.3)  # lease 0.2 s
    lease_a, lease_b = Lease(url, "node-a", timing), Lease(url, "node-b", timing)
    try:
        assert lease_a.acquire() == 1
        a1 = writer(url, "node-a", 1)
        a1.append({"event": "node.active", "node": "node-a", "epoch": 1})
        time.sleep(0.4)
        assert lease_b.acquire() == 2
        before = read_records(url)
        events = [{"event": "device.change", "device": f"fw{n}"} for n in range(THREADS)]
        results = behind_a_locked_head(url, a1, events)
    finally:
        lease_a.close()
        lease_b.close()
    assert all(isinstance(r, AuditFenced) for r in results), results
    assert all("held by node-b with epoch 2" in r.message for r in results)
    assert read_records(url) == before
    assert a1.batches == 1
    seal_head(a1, reason="test")
    a1.close()
    assert verify_url(url).verdict == "ok"


def test_the_pipeline_seals_the_first_record_when_a_batch_holds_it(
    url: str, tmp_path: Path
) -> None:
    """Through the pipeline, on an empty chain: the first records come as one batch (seq 1 to
    8: the writer's connection is held while they queue); the chain's first record is sealed
    at once all the same, as on the files."""
    audit.configure(tmp_path / "logs", console=False, chain_url=url, seal_key="", seal_interval=0)
    try:
        w = audit.pipeline._current().writer
        assert isinstance(w, PgChainWriter)
        log = audit.get_logger()
        threads = [
            threading.Thread(target=log.info, args=("device.change",), kwargs={"device": f"fw{n}"})
            for n in range(THREADS)
        ]
        with w._lock:  # as during another transaction: they all queue
            for t in threads:
                t.start()
            _until(lambda: len(w._queue) == THREADS, "all queued")
        for t in threads:
            t.join()
        assert (w.batches, w.last_seq) == (1, THREADS)
        result = verify_url(url)  # before any other seal: the close's
        assert result.verdict == "ok", (result.findings, result.warnings)
        assert result.seals == 1 and result.records == THREADS
    finally:
        audit.close()
