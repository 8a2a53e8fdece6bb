"""Tampering by someone who can write the log directory, and a torn last write (issue #11, 3 and 5).

The six kinds that `audit verify` used to pass as OK; each is caught now because seals are signed
with a key pinned outside the log directory and every record names the file it was written to.
A torn last write gets its own verdict, apart from tampering.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import agent.audit as audit
from agent.audit.chain import ChainWriter, canonical, record_hash
from agent.audit.seals import SEALS_NAME, load_public_key, read_seals, seal_head
from agent.audit.verify import Verification, verify
from agent.cli.commands.audit import audit as audit_cli
from agent.errors import AuditError, ChainBroken, TailUnsealed, TornWrite
from tests.audit.conftest import (
    PUBLIC_KEY,
    SEAL_KEY,
    START,
    FakeClock,
    lines_of,
    rewrite,
    write_log,
)

DAY1 = "audit-2024-10-15.jsonl"
DAY3 = "audit-2024-10-17.jsonl"
FORGER = Ed25519PrivateKey.generate()  # the attacker's own key: not the pinned one


def _line(record: dict[str, Any]) -> str:
    return canonical(record).decode()[:-1] + f',"hash":"{record_hash(record)}"}}\n'


def _rechain(lines: list[str], *, start_prev: str, start_seq: int) -> list[str]:
    """Lines renumbered from `start_seq` and re-hashed into a chain: what a careful forger does."""
    out, prev = [], start_prev
    for offset, raw in enumerate(lines):
        record = json.loads(raw)
        record.pop("hash")
        record.update(seq=start_seq + offset, prev=prev)
        out.append(_line(record))
        prev = json.loads(out[-1])["hash"]
    return out


def _remake_seals(log_dir: Path, signer: Ed25519PrivateKey | None) -> None:
    """Replace seals.jsonl by one seal of the head as it now is, the way the writer makes it."""
    (log_dir / SEALS_NAME).unlink()
    writer = ChainWriter(log_dir)
    seal_head(writer, reason="periodic", signer=signer)
    writer.close()


def _kinds(result: Verification) -> list[str]:
    return [f.kind for f in result.findings]


def _cli(*args: str) -> tuple[str, BaseException | None]:
    result = CliRunner().invoke(audit_cli, list(args), standalone_mode=False)
    return result.output, result.exception


def _pinned() -> str:
    return audit.seals.public_key_text(PUBLIC_KEY)


# -- 1. the whole chain rewritten together with seals.jsonl -----------------------------------


@pytest.mark.parametrize(("signer", "kinds"), [(None, ["seals"]), (FORGER, ["forged", "seals"])])
def test_chain_rewritten_with_remade_seals_is_caught(
    log_dir: Path, signer: Ed25519PrivateKey | None, kinds: list[str]
) -> None:
    """An edit, the chain re-hashed after it and seals.jsonl re-made (unsigned, or signed with
    another key) fails: the forger cannot sign with the pinned key."""
    write_log(log_dir, 10, signer=SEAL_KEY)
    path = log_dir / DAY1
    lines = lines_of(path)
    lines[3] = lines[3].replace('"outcome":"ok"', '"outcome":"failed"')
    rewrite(
        path, lines[:3] + _rechain(lines[3:], start_prev=json.loads(lines[2])["hash"], start_seq=4)
    )
    _remake_seals(log_dir, signer)
    result = verify(log_dir, public_key=PUBLIC_KEY)
    assert _kinds(result) == kinds
    assert not result.ok and result.verdict == "broken"


# -- 2. events dropped and the chain recomputed ------------------------------------------------


def test_dropped_events_with_recomputed_chain_are_caught(log_dir: Path) -> None:
    """Two records dropped, the rest renumbered and re-hashed, the seal re-made: forged."""
    write_log(log_dir, 10, signer=SEAL_KEY)
    path = log_dir / DAY1
    lines = lines_of(path)
    kept = lines[:3] + lines[5:]
    rewrite(
        path, kept[:3] + _rechain(kept[3:], start_prev=json.loads(kept[2])["hash"], start_seq=4)
    )
    _remake_seals(log_dir, FORGER)
    result = verify(log_dir, public_key=PUBLIC_KEY)
    assert result.records == 8
    assert _kinds(result) == ["forged", "seals"]
    assert result.findings[0].file == SEALS_NAME


def test_dropped_events_under_a_kept_genuine_seal_are_caught(log_dir: Path) -> None:
    """The same drop keeping the genuine signed seal: the sealed seq no longer exists."""
    write_log(log_dir, 10, signer=SEAL_KEY)
    path = log_dir / DAY1
    lines = lines_of(path)
    kept = lines[:3] + lines[5:]
    rewrite(
        path, kept[:3] + _rechain(kept[3:], start_prev=json.loads(kept[2])["hash"], start_seq=4)
    )
    result = verify(log_dir, public_key=PUBLIC_KEY)
    assert _kinds(result) == ["truncated"]


# -- 3. the tail truncated with its seals trimmed ----------------------------------------------


def test_truncated_tail_with_trimmed_seals_is_reported_unsealed(log_dir: Path) -> None:
    """Records 8..10 cut and the seal of seq 10 removed: the records 6..7 left after the last
    remaining seal (seq 5) are reported as an unsealed tail, exit 20, not as OK."""
    writer = write_log(log_dir, 5, signer=SEAL_KEY)
    for n in range(5):
        writer.append({"event": "device.change", "n": n})
    seal_head(writer, reason="test", signer=SEAL_KEY)
    path = log_dir / DAY1
    rewrite(path, lines_of(path)[:7])
    seals = (log_dir / SEALS_NAME).read_text().splitlines(keepends=True)
    (log_dir / SEALS_NAME).write_text(seals[0])
    result = verify(log_dir, public_key=PUBLIC_KEY)
    assert result.ok
    assert (result.verdict, result.unsealed, result.sealed_seq) == ("unsealed", 2, 5)
    out, error = _cli("verify", "--public-key", _pinned(), str(log_dir))
    assert isinstance(error, TailUnsealed)
    assert error.exit_code == 20
    assert "last 2 record(s) are not covered by a signed seal" in error.message
    assert out.startswith("UNSEALED: ")


# -- 4. seals.jsonl deleted alone ---------------------------------------------------------------


def test_deleted_seal_file_is_caught(log_dir: Path) -> None:
    """Records without seals.jsonl: the writer seals the first record at once, so it was deleted."""
    write_log(log_dir, 5, signer=SEAL_KEY)
    (log_dir / SEALS_NAME).unlink()
    result = verify(log_dir, public_key=PUBLIC_KEY)
    assert _kinds(result) == ["seals"]
    assert "seals were deleted" in result.findings[0].message
    _, error = _cli("verify", "--public-key", _pinned(), str(log_dir))
    assert isinstance(error, ChainBroken)


def test_deleted_seal_file_is_caught_without_a_key(log_dir: Path) -> None:
    """The same without a pinned key: still a finding, not a warning."""
    write_log(log_dir, 5)
    (log_dir / SEALS_NAME).unlink()
    assert _kinds(verify(log_dir)) == ["seals"]


# -- 5. a forged record appended after the last seal -------------------------------------------


def _append_forged(log_dir: Path) -> None:
    path = log_dir / DAY1
    last = json.loads(lines_of(path)[-1])
    record = {**last, "seq": last["seq"] + 1, "prev": last.pop("hash"), "device": "fw-internet"}
    record.pop("hash", None)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(_line(record))


def test_record_appended_after_the_last_seal_is_unsealed(log_dir: Path) -> None:
    """A well-chained forged record after the last seal is counted as unsealed (exit 20)."""
    write_log(log_dir, 5, signer=SEAL_KEY)
    _append_forged(log_dir)
    result = verify(log_dir, public_key=PUBLIC_KEY)
    assert (result.verdict, result.unsealed) == ("unsealed", 1)
    assert any(
        w.startswith("1 record(s) after the last signed seal (seq 5)") for w in result.warnings
    )
    _, error = _cli("verify", "--public-key", _pinned(), str(log_dir))
    assert isinstance(error, TailUnsealed)


def test_record_appended_with_a_seal_of_its_own_is_forged(log_dir: Path) -> None:
    """The forged record sealed by the forger (no pinned key): the seal is reported as forged."""
    write_log(log_dir, 5, signer=SEAL_KEY)
    _append_forged(log_dir)
    for signer in (None, FORGER):
        writer = ChainWriter(log_dir)
        seal_head(writer, reason="demand", signer=signer)
        writer.close()
    result = verify(log_dir, public_key=PUBLIC_KEY)
    assert [(f.kind, f.seq) for f in result.findings] == [("forged", 6), ("forged", 6)]
    assert result.unsealed == 1


# -- 6. a day file renamed ----------------------------------------------------------------------


def test_renamed_day_file_is_caught(log_dir: Path) -> None:
    """The newest day file renamed to a later day: its records name the file they went to."""
    write_log(log_dir, 30, step=timedelta(hours=2), signer=SEAL_KEY)
    (log_dir / DAY3).rename(log_dir / "audit-2024-10-20.jsonl")
    result = verify(log_dir, public_key=PUBLIC_KEY)
    first = result.findings[0]
    assert (first.kind, first.file, first.line) == ("renamed", "audit-2024-10-20.jsonl", 1)
    assert f"written to {DAY3}" in first.message
    assert _kinds(result) == ["renamed"]


def test_renamed_file_verified_alone_is_caught(log_dir: Path) -> None:
    """One file verified on its own under another name is caught too."""
    write_log(log_dir, 5, signer=SEAL_KEY)
    moved = log_dir / "audit-2024-10-14.jsonl"
    (log_dir / DAY1).rename(moved)
    assert "renamed" in _kinds(verify(moved, public_key=PUBLIC_KEY))


def test_record_binds_its_file_into_its_hash(log_dir: Path) -> None:
    """The file name is part of the hashed record: changing it breaks the hash."""
    write_log(log_dir, 2, signer=SEAL_KEY)
    lines = lines_of(log_dir / DAY1)
    assert json.loads(lines[0])["file"] == DAY1
    rewrite(log_dir / DAY1, [lines[0].replace(DAY1, "audit-2024-10-20.jsonl"), lines[1]])
    assert _kinds(verify(log_dir, public_key=PUBLIC_KEY))[0] == "edited"


# -- torn last write (disk full mid-write) -----------------------------------------------------


def test_torn_last_write_is_its_own_verdict(log_dir: Path) -> None:
    """Half a record at the end of the newest file, no newline: `torn` (exit 21), not tampering."""
    write_log(log_dir, 5, signer=SEAL_KEY)
    path = log_dir / DAY1
    with path.open("ab") as fh:
        fh.write(b'{"action":null,"actor":"ops","commands":["shut')
    result = verify(log_dir, public_key=PUBLIC_KEY)
    assert result.ok and result.findings == []
    assert result.verdict == "torn"
    assert result.torn is not None and result.torn.startswith(f"{DAY1}:6: the last write was cut")
    out, error = _cli("verify", "--public-key", _pinned(), str(log_dir))
    assert isinstance(error, TornWrite)
    assert error.exit_code == 21
    assert "not tampering" in error.message
    assert out.startswith("TORN: ")


def test_torn_line_in_the_middle_is_tampering(log_dir: Path) -> None:
    """Once the chain continued past the torn line, that line is in the middle: chain broken."""
    write_log(log_dir, 5, signer=SEAL_KEY)
    path = log_dir / DAY1
    with path.open("ab") as fh:
        fh.write(b'{"action":null,"actor":"ops","commands":["shut')
    writer = ChainWriter(log_dir, clock=FakeClock(START + timedelta(hours=1)))
    writer.append({"event": "step.started"})
    seal_head(writer, reason="test", signer=SEAL_KEY)
    result = verify(log_dir, public_key=PUBLIC_KEY)
    assert result.verdict == "broken"
    assert [(f.kind, f.line) for f in result.findings] == [("malformed", 6)]
    _, error = _cli("verify", "--public-key", _pinned(), str(log_dir))
    assert isinstance(error, ChainBroken)


def test_torn_end_of_an_older_file_is_tampering(log_dir: Path) -> None:
    """A cut last line in a file that is not the newest cannot be a torn write."""
    write_log(log_dir, 30, step=timedelta(hours=2), signer=SEAL_KEY)
    path = log_dir / DAY1
    path.write_bytes(path.read_bytes()[:-40])
    result = verify(log_dir, public_key=PUBLIC_KEY)
    assert result.torn is None
    assert result.findings[0].kind == "truncated"


# -- anchoring: no key, old logs, keys ---------------------------------------------------------


def test_without_a_public_key_the_seals_are_not_anchored(log_dir: Path) -> None:
    """No pinned key: the log verifies, and the result says loudly the seals anchor nothing."""
    write_log(log_dir, 5, signer=SEAL_KEY)
    result = verify(log_dir)
    assert result.ok and not result.anchored
    assert any(w.startswith("SEALS NOT ANCHORED") for w in result.warnings)
    assert "1 seal(s) carry a signature nobody checked" in result.warnings[-1]
    out, error = _cli("verify", str(log_dir))
    assert error is None
    assert "warning: SEALS NOT ANCHORED" in out


def test_log_of_the_previous_release_still_verifies(log_dir: Path) -> None:
    """Records without `file` and unsigned seals (today's logs) verify without a key; with the
    key pinned they fail: nothing in them is signed."""
    log_dir.mkdir()
    prev, lines = "0" * 64, []
    for seq in range(1, 4):
        record = {"event": "x", "seq": seq, "prev": prev, "ts": f"2024-10-15T0{seq}:00:00+00:00"}
        lines.append(_line(record))
        prev = json.loads(lines[-1])["hash"]
    (log_dir / DAY1).write_text("".join(lines))
    seal = {"file": DAY1, "seq": 3, "hash": prev, "ts": "2024-10-15T04:00:00+00:00"}
    (log_dir / SEALS_NAME).write_bytes(canonical(seal) + b"\n")
    old = verify(log_dir)
    assert (old.verdict, old.anchored) == ("ok", False)
    assert _kinds(verify(log_dir, public_key=PUBLIC_KEY)) == ["seals"]


def test_old_record_stamped_after_its_file_day_is_renamed(log_dir: Path) -> None:
    """Records of old logs (no `file`) in a file named for an earlier day than their stamp."""
    log_dir.mkdir()
    record = {"event": "x", "seq": 1, "prev": "0" * 64, "ts": "2024-10-15T01:00:00+00:00"}
    (log_dir / "audit-2024-10-14.jsonl").write_text(_line(record))
    assert "renamed" in _kinds(verify(log_dir))


def test_pipeline_signs_seals_with_the_configured_key(
    log_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$CORDON_AUDIT_SEAL_KEY=file:KEY makes the pipeline sign; the key never reaches the log."""
    keyfile = tmp_path / "seal.key"
    out, error = _cli("keygen", str(keyfile))
    assert error is None
    assert oct(keyfile.stat().st_mode & 0o777) == "0o600"
    public = next(line for line in out.splitlines() if line.startswith("public key "))
    public = public.split(": ", 1)[1]
    monkeypatch.setenv("CORDON_AUDIT_SEAL_KEY", f"file:{keyfile}")
    audit.configure(log_dir, console=False, seal_interval=0)
    try:
        audit.get_logger().info("device.change", device="sw1")
        audit.get_logger().info("device.change", device="sw2")
    finally:
        audit.close()
    loaded = read_seals(log_dir)
    assert loaded is not None
    assert [(s["seq"], "sig" in s) for s in loaded[0]] == [(1, True), (2, True)]
    result = verify(log_dir, public_key=load_public_key(public, what="test"))
    assert (result.verdict, result.anchored, result.signed_seals) == ("ok", True, 2)
    body = "".join(keyfile.read_text().splitlines()[1:-1])
    for path in log_dir.rglob("*"):
        if path.is_file():
            assert body not in path.read_text(errors="replace")
            assert body[:20] not in path.read_text(errors="replace")
    _, again = _cli("keygen", str(keyfile))
    assert isinstance(again, AuditError) and "not overwritten" in again.message


def test_wrong_public_key_is_a_clear_error(log_dir: Path) -> None:
    """A public key that is not an Ed25519 key: an AuditError naming the option, no traceback."""
    write_log(log_dir, 2, signer=SEAL_KEY)
    bad = "ed25519:" + base64.b64encode(b"short").decode()
    _, error = _cli("verify", "--public-key", bad, str(log_dir))
    assert type(error) is AuditError
    assert "--public-key" in error.message
    assert "not an Ed25519 public key" in error.message


def test_public_key_from_the_environment(log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$CORDON_AUDIT_SEAL_PUBKEY pins the key when --public-key is not given."""
    write_log(log_dir, 2, signer=SEAL_KEY)
    monkeypatch.setenv("CORDON_AUDIT_SEAL_PUBKEY", _pinned())
    out, error = _cli("verify", str(log_dir))
    assert error is None
    assert "1 signed by key" in out
    assert "NOT ANCHORED" not in out
    assert os.environ["CORDON_AUDIT_SEAL_PUBKEY"].startswith("ed25519:")
