"""Two real processes (a daemon and a `--local` CLI, say) appending at once share one chain."""

from __future__ import annotations

import errno
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import agent.audit as audit
from agent.audit.pipeline import appending
from agent.audit.verify import verify
from agent.errors import AuditError

WRITER = """
import os, sys, time
from pathlib import Path
import agent.audit as audit
log_dir, go, name, count = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
audit.configure(log_dir, console=False, seal_interval=0)
log = audit.get_logger(actor=name)
while not go.exists():
    time.sleep(0.001)
for n in range(count):
    log.info("step.started", n=n)
audit.close()
"""

COUNT = 2000


def test_two_processes_extend_one_gap_free_chain(tmp_path: Path) -> None:
    """Interleaved appends from two processes verify, with seq 1..N and no gap or fork."""
    log_dir, go = tmp_path / "logs", tmp_path / "go"
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(log_dir), str(go), name, str(COUNT)], cwd=root
        )
        for name in ("daemon", "cli")
    ]
    time.sleep(0.5)  # both imported and waiting
    go.touch()
    assert [p.wait(timeout=120) for p in procs] == [0, 0]

    result = verify(log_dir)
    assert result.ok, result.findings
    assert (result.records, result.first_seq, result.head_seq) == (2 * COUNT, 1, 2 * COUNT)
    actors = [
        json.loads(line)["actor"]
        for path in sorted(log_dir.glob("audit-*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert actors.count("daemon") == actors.count("cli") == COUNT
    switches = sum(a != b for a, b in itertools.pairwise(actors))
    assert switches > 1, "the two writers never interleaved: the test proved nothing"


def test_a_block_of_appends_stays_together_and_the_chain_verifies(tmp_path: Path) -> None:
    """`audit.appending`: one thread's records in the block are contiguous in the chain (the
    chain held once for them), while another thread appends throughout; each is its own record
    and the whole chain verifies, seq 1..N without gap (#18)."""
    log_dir = tmp_path / "logs"
    audit.configure(log_dir, console=False, seal_interval=0)
    try:
        stop = threading.Event()
        appended = threading.Semaphore(0)  # released after each of the other thread's records

        def other() -> None:
            log = audit.get_logger(actor="other")
            while not stop.is_set():
                log.info("step.started")
                appended.release()

        t = threading.Thread(target=other)
        t.start()
        log = audit.get_logger(actor="block")
        try:
            for _ in range(20):
                # the other thread appends between two blocks (the lock is not fair: on a busy
                # machine this thread could take it back at once every time)
                while appended.acquire(blocking=False):
                    pass
                assert appended.acquire(timeout=30), "the other thread appended nothing"
                with appending():
                    for n in range(16):
                        log.info("flow.checked", n=n)
        finally:
            stop.set()
            t.join()
    finally:
        audit.close()
    result = verify(log_dir)
    assert result.ok, result.findings
    actors = [
        json.loads(line)["actor"]
        for path in sorted(log_dir.glob("audit-*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert result.records == len(actors) and actors.count("block") == 320
    runs = [len(list(g)) for a, g in itertools.groupby(actors) if a == "block"]
    assert all(n % 16 == 0 for n in runs), runs  # never split inside a block
    assert actors.count("other") > 0 and len(runs) > 1, "the writers never interleaved"


def test_a_lock_the_file_system_refuses_is_an_audit_error_in_a_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`audit.appending` on a log directory whose file system refuses the lock (ENOLCK, an NFS
    mount): the trail's own AuditError saying where and what to check, as a single append
    says it, never a bare OSError (review of #18)."""
    import fcntl  # noqa: PLC0415 - patched here only

    log_dir = tmp_path / "logs"
    audit.configure(log_dir, console=False, seal_interval=0)
    real = fcntl.flock

    def refused(fd: int, op: int) -> None:
        if op == fcntl.LOCK_EX:
            raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
        real(fd, op)

    try:
        monkeypatch.setattr(fcntl, "flock", refused)
        with pytest.raises(AuditError, match=f"cannot write the audit log in {log_dir}") as err:  # noqa: SIM117
            with appending():
                audit.get_logger(actor="block").info("flow.checked")
        assert "local file system" in (err.value.hint or "")
    finally:
        monkeypatch.undo()
        audit.close()
