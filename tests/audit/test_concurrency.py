"""Two real processes (a daemon and a `--local` CLI, say) appending at once share one chain."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

from agent.audit.verify import verify

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
