"""Benchmark of audit appends through the real pipeline (`agent.audit.get_logger`): records per
second on the group's chain in PostgreSQL beside the file chain, by 1 writer thread, by 8
threads of one process (PostgreSQL: group commit, several records per transaction) and by 2
and 4 processes (as several daemons or `--local` commands on one state database).

File chain: a log directory in a temporary directory. PostgreSQL: a throwaway cluster of
Debian's server (tests/pgserver.py) on this machine's disk, fsync on, over its Unix socket;
appends commit asynchronously and seals synchronously, as `agent.audit.pgchain` does. Every
run ends with `audit verify` of the chain it wrote (all records present, chain intact).

Run: .venv/bin/python benchmarks/bench_audit_pg.py [--events N]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

import agent.audit as audit
from agent.audit.pgchain import read_records
from agent.audit.verify import verify, verify_url
from benchmarks.machine import describe
from tests.pgserver import PgServer

FIELDS = {
    "run_id": "r-20241015-0312-ab12",
    "site": "rennes-la-sagesse",
    "action": "port.shutdown",
    "commands": ["interface GigabitEthernet0/12", "shutdown", "exit"],
    "outcome": "ok",
}


def _configure(where: str, log_dir: Path) -> None:
    url = where if where.startswith("postgresql") else None
    audit.configure(
        log_dir if url else Path(where), console=False, chain_url=url, seal_key="", seal_interval=0
    )


def _appends(tag: str, count: int) -> None:
    log = audit.get_logger()
    for n in range(count):
        log.info("device.change", device=f"{tag}-{n}", **FIELDS)


def _threads(threads: int, count: int, tag: str) -> tuple[float, float]:
    """`threads` threads appending `count` records in all; (start, end)."""
    _appends(f"{tag}-warm", 1)  # connected, tables there: not measured
    start = threading.Barrier(threads + 1)
    each = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]

    def run(i: int) -> None:
        start.wait()
        _appends(f"{tag}-{i}", each[i])

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    began = time.perf_counter()
    for w in workers:
        w.join()
    return began, time.perf_counter()


def _child(where: str, log_dir: str, threads: int, count: int, tag: str, out: Any) -> None:
    _configure(where, Path(log_dir))
    out.put(_threads(threads, count, tag))
    audit.close()


def case(where: str, tmp: Path, processes: int, threads: int, count: int) -> float:
    """Appends/s for `count` records by `processes` x `threads` writers."""
    if processes == 1:
        _configure(where, tmp / "local")
        began, ended = _threads(threads, count, "p0")
        audit.close()
        return count / (ended - began)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=_child,
            args=(where, str(tmp / f"local{p}"), threads, count // processes, f"p{p}", out),
        )
        for p in range(processes)
    ]
    for p in procs:
        p.start()
    results: list[tuple[float, float]] = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join()
    began = min(r[0] for r in results)
    ended = max(r[1] for r in results)
    return (count // processes) * processes / (ended - began)


def check(where: str) -> float:
    """The chain verifies, no record twice; records per transaction (PostgreSQL: the records
    of one transaction share its `ts`, the database's clock read under the head lock)."""
    if where.startswith("postgresql"):
        result = verify_url(where)
        assert result.verdict == "ok", (result.findings[:3], result.warnings[:3])
        records = [r for r in read_records(where) if r["event"] == "device.change"]
        devices = [r["device"] for r in records]
        assert len(devices) == len(set(devices)), "a record written twice"
        return len(records) / len({r["ts"] for r in records})
    found = verify(Path(where))
    assert found.ok, found.findings[:3]
    return 1.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000, help="records per case")
    args = parser.parse_args()
    print(describe())
    print(f"agent code: {Path(audit.__file__).resolve().parents[2]}")
    cases = [
        ("1 writer thread", 1, 1),
        ("8 threads, one process", 1, 8),
        ("2 processes, 1 thread each", 2, 1),
        ("2 processes, 8 threads each", 2, 8),
    ]
    with tempfile.TemporaryDirectory() as tmp, PgServer.start(fsync=True) as pg:
        with psycopg.connect(pg.url("postgres")) as db:
            row = db.execute("SHOW server_version").fetchone()
        print(
            f"file chain in {tmp}; PostgreSQL {row[0] if row else '?'} (fsync on; appends "
            f"commit asynchronously, seals synchronously; Unix socket), psycopg "
            f"{psycopg.__version__}; {args.events} records per case, through the pipeline"
        )
        print(f"{'case':<30} {'file records/s':>15} {'postgresql records/s':>21} {'per txn':>8}")
        for label, processes, threads in cases:
            root = Path(tmp) / label.replace(" ", "_").replace(",", "")
            files = root / "files"
            file_rate = case(str(files), root, processes, threads, args.events)
            check(str(files))
            url = pg.database()
            pg_rate = case(url, root, processes, threads, args.events)
            per = check(url)
            print(f"{label:<30} {file_rate:>15,.0f} {pg_rate:>21,.0f} {per:>8.1f}")


if __name__ == "__main__":
    main()
