"""Verification names each kind of tampering at the first bad record (file, line, seq)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from agent.audit.chain import GENESIS, canonical, record_hash
from agent.audit.evidence import store
from agent.audit.seals import seal_head
from agent.audit.verify import verify
from agent.errors import AuditError
from tests.audit.conftest import PUBLIC_KEY, SEAL_KEY, lines_of, rewrite, write_log

DAY1 = "audit-2024-10-15.jsonl"
DAY2 = "audit-2024-10-16.jsonl"
DAY3 = "audit-2024-10-17.jsonl"


def _line(record: dict[str, object]) -> str:
    """The line a careful forger would write: the writer's exact bytes for `record`."""
    return canonical(record).decode()[:-1] + f',"hash":"{record_hash(record)}"}}\n'


def _rehash(line: str, **changes: object) -> str:
    """The line with `changes` applied and a hash that matches its new content."""
    record = json.loads(line)
    record.pop("hash")
    record.update(changes)
    return _line(record)


def test_untouched_log_verifies(log_dir: Path) -> None:
    """A log written by the chain writer and sealed with the pinned key verifies with no finding
    and no warning, anchored."""
    write_log(log_dir, 30, step=timedelta(hours=2), signer=SEAL_KEY)
    result = verify(log_dir, public_key=PUBLIC_KEY)
    assert result.ok, result.findings
    assert result.warnings == []
    assert (result.verdict, result.anchored, result.signed_seals) == ("ok", True, 1)
    assert (result.records, result.first_seq, result.head_seq) == (30, 1, 30)
    assert result.files == [DAY1, DAY2, DAY3]


def test_edited_field_is_named(log_dir: Path) -> None:
    """Changing one field of a record is reported as `edited` at that file, line and seq."""
    write_log(log_dir, 10)
    path = log_dir / DAY1
    lines = lines_of(path)
    lines[4] = lines[4].replace('"outcome":"ok"', '"outcome":"failed"')
    rewrite(path, lines)
    result = verify(log_dir)
    first = result.findings[0]
    assert (first.kind, first.file, first.line, first.seq) == ("edited", DAY1, 5, 5)
    assert len(result.findings) == 1


def test_deleted_record_is_named(log_dir: Path) -> None:
    """Removing a record is reported as `deleted` with the missing seq, at the next record."""
    write_log(log_dir, 10)
    path = log_dir / DAY1
    lines = lines_of(path)
    del lines[6]
    rewrite(path, lines)
    result = verify(log_dir)
    first = result.findings[0]
    assert (first.kind, first.file, first.line, first.seq) == ("deleted", DAY1, 7, 8)
    assert "seq 7 missing" in first.message
    assert len(result.findings) == 1


def test_inserted_record_is_named(log_dir: Path) -> None:
    """A forged line between two records is reported as `inserted` at its own line."""
    write_log(log_dir, 10)
    path = log_dir / DAY1
    lines = lines_of(path)
    forged = lines[3].replace('"device":"sw4"', '"device":"fw-internet"')
    lines.insert(4, forged)
    rewrite(path, lines)
    result = verify(log_dir)
    first = result.findings[0]
    assert (first.kind, first.file, first.line) == ("inserted", DAY1, 5)
    assert len(result.findings) == 1


def test_inserted_record_with_recomputed_hash_is_named(log_dir: Path) -> None:
    """A forged record with valid hash, seq and prev is `inserted`: the chain continues past it."""
    write_log(log_dir, 10)
    path = log_dir / DAY1
    lines = lines_of(path)
    genuine = json.loads(lines[4])  # seq 5
    lines.insert(4, _rehash(lines[4], device="fw-internet", outcome="ok"))
    rewrite(path, lines)
    result = verify(log_dir)
    first = result.findings[0]
    assert (first.kind, first.file, first.line, first.seq) == ("inserted", DAY1, 5, 5)
    assert genuine["seq"] == 5
    assert len(result.findings) == 1


def test_swapped_adjacent_records_are_named(log_dir: Path) -> None:
    """Two neighbouring records exchanged are reported once as `reordered` at the first of them."""
    write_log(log_dir, 10)
    path = log_dir / DAY1
    lines = lines_of(path)
    lines[5], lines[6] = lines[6], lines[5]
    rewrite(path, lines)
    result = verify(log_dir)
    first = result.findings[0]
    assert (first.kind, first.file, first.line, first.seq) == ("reordered", DAY1, 6, 7)
    assert f"seq 6 ({DAY1}:7)" in first.message
    assert len(result.findings) == 1


def test_swapped_distant_records_are_named(log_dir: Path) -> None:
    """Two records far apart exchanged are one `reordered` finding, not a cascade of gaps."""
    write_log(log_dir, 20)
    path = log_dir / DAY1
    lines = lines_of(path)
    lines[2], lines[12] = lines[12], lines[2]
    rewrite(path, lines)
    result = verify(log_dir)
    assert [(f.kind, f.line, f.seq) for f in result.findings] == [("reordered", 3, 13)]


def test_truncated_tail_is_named(log_dir: Path) -> None:
    """Cutting the last records is `truncated`: the seal says the chain went further."""
    write_log(log_dir, 10)
    path = log_dir / DAY1
    rewrite(path, lines_of(path)[:7])
    result = verify(log_dir)
    first = result.findings[0]
    assert (first.kind, first.file, first.line, first.seq) == ("truncated", DAY1, 7, 7)
    assert "seq 8..10 were cut" in first.message


def test_cut_last_line_is_named(log_dir: Path) -> None:
    """A last line cut in the middle is `truncated` at that line."""
    write_log(log_dir, 5)
    path = log_dir / DAY1
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    result = verify(log_dir)
    first = result.findings[0]
    assert (first.kind, first.file, first.line) == ("truncated", DAY1, 5)


def test_removed_rotated_file_is_named(log_dir: Path) -> None:
    """Removing a whole day's file is `deleted` across the rotation, naming both ends."""
    write_log(log_dir, 30, step=timedelta(hours=2))
    (log_dir / DAY2).unlink()
    result = verify(log_dir)
    first = result.findings[0]
    assert (first.kind, first.file, first.line) == ("deleted", DAY3, 1)
    assert "rotated file removed" in first.message
    assert f"{DAY1}:" in first.message
    assert len(result.findings) == 1


def test_removed_last_rotated_file_is_truncation(log_dir: Path) -> None:
    """Removing the newest file is caught by the seal and names the missing file."""
    write_log(log_dir, 30, step=timedelta(hours=2))
    (log_dir / DAY3).unlink()
    result = verify(log_dir)
    first = result.findings[0]
    assert first.kind == "truncated"
    assert first.file == DAY2
    assert f"{DAY3} is absent" in first.message


def test_removed_first_file_is_named(log_dir: Path) -> None:
    """Removing the oldest file leaves the chain starting after seq 1, reported as `deleted`."""
    write_log(log_dir, 30, step=timedelta(hours=2))
    (log_dir / DAY1).unlink()
    result = verify(log_dir)
    first = result.findings[0]
    assert (first.kind, first.file, first.line) == ("deleted", DAY2, 1)
    assert "before the first record" in first.message


def test_non_json_line_is_named(log_dir: Path) -> None:
    """A line that is not JSON is `malformed` at its line and does not hide later tampering."""
    write_log(log_dir, 10)
    path = log_dir / DAY1
    lines = lines_of(path)
    lines.insert(3, "this is not json\n")
    lines[8] = lines[8].replace('"outcome":"ok"', '"outcome":"nope"')
    rewrite(path, lines)
    result = verify(log_dir)
    assert [(f.kind, f.line) for f in result.findings] == [("malformed", 4), ("edited", 9)]


def test_rewritten_chain_is_caught_by_the_seal(log_dir: Path) -> None:
    """Editing a record and re-hashing everything after it is caught by the sealed hash."""
    write_log(log_dir, 10)
    path = log_dir / DAY1
    lines = lines_of(path)
    prev = json.loads(lines[2])["hash"]
    for index in range(3, 10):
        changes: dict[str, object] = {"prev": prev}
        if index == 3:
            changes["outcome"] = "failed"
        lines[index] = _rehash(lines[index], **changes)
        prev = json.loads(lines[index])["hash"]
    rewrite(path, lines)
    result = verify(log_dir)
    assert [(f.kind, f.seq) for f in result.findings] == [("rewritten", 10)]


def test_unsealed_records_are_a_warning(log_dir: Path) -> None:
    """Records written after the last seal are counted in a warning."""
    writer = write_log(log_dir, 5)
    writer.append({"event": "step.started"})
    result = verify(log_dir)
    assert result.ok
    assert any(w.startswith("1 record(s) after the last seal") for w in result.warnings)


def test_altered_evidence_is_named(log_dir: Path) -> None:
    """An evidence blob changed after it was referenced is reported at the referencing record."""
    digest = store(b"interface Gi0/1\n shutdown\n", log_dir=log_dir)
    writer = write_log(log_dir, 3, seal=False)
    writer.append({"event": "device.change", "config_after_sha256": digest})
    seal_head(writer, reason="test")
    blob = log_dir / "evidence" / "sha256" / digest
    blob.chmod(0o600)
    blob.write_bytes(b"interface Gi0/1\n no shutdown\n")
    result = verify(log_dir)
    assert [(f.kind, f.seq) for f in result.findings] == [("evidence", 4)]
    assert "altered" in result.findings[0].message


def test_single_file_is_verified_alone(log_dir: Path) -> None:
    """Verifying one rotated file checks its own chain without needing the previous file."""
    write_log(log_dir, 30, step=timedelta(hours=2))
    assert verify(log_dir / DAY2).ok
    path = log_dir / DAY2
    lines = lines_of(path)
    del lines[2]
    rewrite(path, lines)
    first = verify(path).findings[0]
    assert (first.kind, first.file, first.line) == ("deleted", DAY2, 3)


def test_first_record_must_start_at_genesis(log_dir: Path) -> None:
    """A first record whose prev is not the genesis hash is reported."""
    log_dir.mkdir()
    record = {"event": "x", "seq": 1, "prev": "f" * 64, "ts": "2024-10-15T00:00:00+00:00"}
    (log_dir / DAY1).write_text(_line(record))
    result = verify(log_dir)
    assert result.findings[0].kind == "relinked"
    assert GENESIS not in result.findings[0].message


def test_nothing_to_verify_is_an_error(tmp_path: Path) -> None:
    """A directory without audit files or seals raises AuditError instead of passing."""
    with pytest.raises(AuditError, match="no audit files"):
        verify(tmp_path)


def test_copied_record_is_inserted_not_reordered(log_dir: Path) -> None:
    """A verbatim copy of a later record placed earlier is `inserted`, not a reordering."""
    write_log(log_dir, 10)
    path = log_dir / DAY1
    lines = lines_of(path)
    lines.insert(3, lines[7])
    rewrite(path, lines)
    result = verify(log_dir)
    assert [(f.kind, f.line, f.seq) for f in result.findings] == [("inserted", 4, 8)]


def test_forged_record_beyond_the_end_is_inserted(log_dir: Path) -> None:
    """A self-consistent record with a far-away seq, skipped by the chain, is `inserted`."""
    write_log(log_dir, 10)
    path = log_dir / DAY1
    lines = lines_of(path)
    lines.insert(3, _rehash(lines[3], seq=500))
    rewrite(path, lines)
    result = verify(log_dir)
    assert [(f.kind, f.line, f.seq) for f in result.findings] == [("inserted", 4, 500)]


def test_duplicate_key_edit_is_named(log_dir: Path) -> None:
    """A duplicate key that leaves the parsed content intact but changes the bytes is `edited`."""
    write_log(log_dir, 5)
    path = log_dir / DAY1
    lines = lines_of(path)
    lines[2] = lines[2].replace('{"device"', '{"outcome":"failed","device"', 1)
    rewrite(path, lines)
    result = verify(log_dir)
    assert [(f.kind, f.line) for f in result.findings] == [("edited", 3)]
    assert "canonical form" in result.findings[0].message
