"""The chain writer: canonical hashing, genesis, rotation by UTC day, resuming, threads, secrets."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.audit.chain import GENESIS, ChainWriter, canonical, read_head, record_hash
from agent.audit.redact import REDACTED, register_secret
from tests.audit.conftest import START, FakeClock, lines_of, verify_sealed, write_log


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines_of(path)]


def test_hash_is_sha256_of_the_canonical_record_without_hash(log_dir: Path) -> None:
    """Anyone can recompute a record's hash: sha256 of sorted, compact JSON without `hash`."""
    record = ChainWriter(log_dir, clock=FakeClock(START)).append({"event": "run.started", "é": 1})
    stored = _records(log_dir / "audit-2024-10-15.jsonl")[0]
    assert stored == record
    body = {k: v for k, v in stored.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert stored["hash"] == hashlib.sha256(text.encode()).hexdigest()
    assert canonical(body) == text.encode()
    assert record_hash(body) == stored["hash"]


def test_first_record_links_to_genesis_and_seqs_follow(log_dir: Path) -> None:
    """The first record has seq 1 and prev = 64 zeros; each next one links to the one before."""
    write_log(log_dir, 4, seal=False)
    records = _records(log_dir / "audit-2024-10-15.jsonl")
    assert [r["seq"] for r in records] == [1, 2, 3, 4]
    assert records[0]["prev"] == GENESIS
    assert [r["prev"] for r in records[1:]] == [r["hash"] for r in records[:-1]]


def test_timestamp_is_utc_with_offset(log_dir: Path) -> None:
    """`ts` is ISO-8601 in UTC with an explicit +00:00, whatever zone the clock returns."""
    paris = datetime(2024, 10, 15, 7, 12, tzinfo=ZoneInfo("Europe/Paris"))
    record = ChainWriter(log_dir, clock=FakeClock(paris)).append({"event": "x"})
    assert record["ts"] == "2024-10-15T05:12:00.000000+00:00"


def test_chain_continues_across_daily_files(log_dir: Path) -> None:
    """At midnight UTC a new file starts whose first record links to the previous file's last."""
    write_log(log_dir, 6, start=datetime(2024, 10, 15, 22, 0, tzinfo=UTC), step=timedelta(hours=1))
    day1 = _records(log_dir / "audit-2024-10-15.jsonl")
    day2 = _records(log_dir / "audit-2024-10-16.jsonl")
    assert [r["seq"] for r in day1] == [1, 2]
    assert [r["seq"] for r in day2] == [3, 4, 5, 6]
    assert day2[0]["prev"] == day1[-1]["hash"]


def test_clock_going_back_never_writes_into_an_older_file(log_dir: Path) -> None:
    """If the clock jumps back across midnight, records stay in the newest file, in order."""
    clock = FakeClock(datetime(2024, 10, 16, 0, 0, 5, tzinfo=UTC), step=timedelta(0))
    writer = ChainWriter(log_dir, clock=clock)
    writer.append({"event": "a"})
    clock.now = datetime(2024, 10, 15, 23, 59, 59, tzinfo=UTC)
    writer.append({"event": "b"})
    assert not (log_dir / "audit-2024-10-15.jsonl").exists()
    assert [r["event"] for r in _records(log_dir / "audit-2024-10-16.jsonl")] == ["a", "b"]


def test_new_writer_resumes_the_chain_from_disk(log_dir: Path) -> None:
    """A restarted process continues at the head found on disk, not at genesis."""
    write_log(log_dir, 3, seal=False)
    head = read_head(log_dir)
    record = ChainWriter(log_dir, clock=FakeClock(START + timedelta(minutes=5))).append(
        {"event": "after.restart"}
    )
    assert (record["seq"], record["prev"]) == (head.seq + 1, head.hash)
    assert verify_sealed(log_dir).ok


def test_writer_notices_appends_by_another_writer(log_dir: Path) -> None:
    """Two writers on one directory alternate without forking the chain."""
    first = ChainWriter(log_dir, clock=FakeClock(START))
    second = ChainWriter(log_dir, clock=FakeClock(START))
    for n in range(10):
        (first if n % 2 else second).append({"event": "x", "n": n})
    records = _records(log_dir / "audit-2024-10-15.jsonl")
    assert [r["seq"] for r in records] == list(range(1, 11))
    assert verify_sealed(log_dir).ok


def test_cut_last_line_is_isolated_and_chain_continues(log_dir: Path) -> None:
    """After a crash left half a line, appending resumes on a new line from the last good record."""
    write_log(log_dir, 3, seal=False)
    path = log_dir / "audit-2024-10-15.jsonl"
    path.write_bytes(path.read_bytes() + b'{"event":"half')
    record = ChainWriter(log_dir, clock=FakeClock(START + timedelta(hours=1))).append(
        {"event": "next"}
    )
    assert record["seq"] == 4
    result = verify_sealed(log_dir)
    assert [(f.kind, f.line) for f in result.findings] == [("malformed", 4)]
    assert result.head_seq == 4


def test_chain_fields_given_by_callers_are_kept_aside(log_dir: Path) -> None:
    """A caller's own `seq`, `hash` or `ts` field cannot overwrite the chain's."""
    record = ChainWriter(log_dir, clock=FakeClock(START)).append(
        {"event": "evidence.copied", "hash": "abc", "seq": 99}
    )
    assert (record["seq"], record["hash_"], record["seq_"]) == (1, "abc", 99)
    assert verify_sealed(log_dir).ok


def test_registered_secret_never_reaches_the_file(log_dir: Path) -> None:
    """A secret in any field is replaced before hashing, and the record still verifies."""
    secret = "Ch4in-Wr1ter-S3cret"
    register_secret(secret)
    ChainWriter(log_dir, clock=FakeClock(START)).append(
        {
            "event": "device.change",
            "commands": [f"username ops secret {secret}"],
            "x": {"y": secret},
        }
    )
    data = (log_dir / "audit-2024-10-15.jsonl").read_text()
    assert secret not in data
    assert REDACTED in data
    assert verify_sealed(log_dir).ok


def test_threads_share_one_chain(log_dir: Path) -> None:
    """Four threads appending at once produce one gap-free chain."""
    writer = ChainWriter(log_dir)

    def work(n: int) -> None:
        for i in range(100):
            writer.append({"event": "x", "thread": n, "i": i})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = verify_sealed(log_dir)
    assert result.ok, result.findings
    assert (result.records, result.head_seq) == (400, 400)


def test_writer_notices_a_new_day_file_opened_by_another_writer(log_dir: Path) -> None:
    """If another process already started today's file, this writer continues after its record."""
    day1, day2 = START, START + timedelta(days=1)
    first = ChainWriter(log_dir, clock=FakeClock(day1, step=timedelta(0)))
    second = ChainWriter(log_dir, clock=FakeClock(day2, step=timedelta(0)))
    first.append({"event": "a"})
    second.append({"event": "b"})
    first._clock = FakeClock(day2, step=timedelta(0))
    record = first.append({"event": "c"})
    assert record["seq"] == 3
    assert verify_sealed(log_dir).ok


def test_undecodable_device_output_is_logged_and_verifies(log_dir: Path) -> None:
    """Strings carrying lone surrogates (undecodable bytes) are written as text and verify."""
    output = b"banner \xff\xfe".decode("utf-8", errors="surrogateescape")
    record = ChainWriter(log_dir, clock=FakeClock(START)).append({"event": "x", "output": output})
    assert record["output"] == "banner \\udcff\\udcfe"
    assert verify_sealed(log_dir).ok
