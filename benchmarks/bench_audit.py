"""Benchmark of the audit trail: log throughput with the hash chain vs plain structlog JSON, and
`audit verify` time on a generated 1,000,000-event log. Imports `agent.audit` only.

Run: .venv/bin/python benchmarks/bench_audit.py [--events N] [--verify-events M]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

import agent.audit as audit
from agent.audit.chain import GENESIS, canonical, file_name_for
from agent.audit.seals import SEALS_NAME
from agent.audit.verify import verify

FIELDS = {
    "device": "sw-core-1",
    "action": "port.shutdown",
    "commands": ["interface GigabitEthernet0/12", "shutdown", "exit"],
    "outcome": "ok",
    "duration_s": 0.184,
}
CONTEXT = {
    "run_id": "r-20241015-0312-ab12",
    "incident_id": "inc-2024-10-15-rennes",
    "actor": "alice.martin",
    "role": "oncall",
    "site": "rennes-la-sagesse",
}


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"structlog {structlog.__version__}, {platform.system()} {platform.release()}"
    )


def bench_chain(directory: Path, events: int) -> float:
    audit.configure(directory, console=False, seal_interval=60.0)
    log = audit.get_logger()
    with audit.bind(**CONTEXT):
        start = time.perf_counter()
        for n in range(events):
            log.info("device.change", n=n, **FIELDS)
        elapsed = time.perf_counter() - start
    audit.close()
    result = verify(directory)
    assert result.ok and result.records == events, result.findings[:3]
    return events / elapsed


def bench_plain(directory: Path, events: int) -> float:
    directory.mkdir(parents=True)
    with (directory / "plain.jsonl").open("w", encoding="utf-8") as fh:
        log = structlog.wrap_logger(
            structlog.WriteLogger(fh),
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                structlog.processors.JSONRenderer(sort_keys=True),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(0),
        )
        with structlog.contextvars.bound_contextvars(**CONTEXT):
            start = time.perf_counter()
            for n in range(events):
                log.info("device.change", n=n, **FIELDS)
            elapsed = time.perf_counter() - start
    return events / elapsed


def generate(directory: Path, events: int) -> int:
    """Write a valid sealed chain of `events` records spread over days, the writer's format."""
    directory.mkdir(parents=True)
    moment = datetime(2024, 10, 15, tzinfo=UTC)
    step = timedelta(seconds=86400 * 10 / events)  # about ten daily files
    prev, name, fh, size = GENESIS, "", None, 0
    base = {"event": "device.change", "level": "info", "host": "bench", "pid": 1}
    base |= CONTEXT | FIELDS
    for seq in range(1, events + 1):
        record = {**base, "n": seq, "seq": seq, "prev": prev, "ts": moment.isoformat()}
        body = canonical(record)
        prev = hashlib.sha256(body).hexdigest()
        if file_name_for(moment) != name:
            if fh is not None:
                fh.close()
            name = file_name_for(moment)
            fh = (directory / name).open("ab")
        assert fh is not None
        line = body[:-1] + b',"hash":"' + prev.encode() + b'"}\n'
        fh.write(line)
        size += len(line)
        moment += step
    assert fh is not None
    fh.close()
    seal = {"file": name, "seq": events, "hash": prev, "ts": moment.isoformat(), "reason": "x"}
    (directory / SEALS_NAME).write_bytes(canonical(seal) + b"\n")
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--verify-events", type=int, default=1_000_000)
    args = parser.parse_args()
    for n in range(20):  # a realistic number of secrets known to the scrubber
        audit.register_secret(f"bench-secret-{n:02d}-Xq!")
    print(f"machine: {machine()}")
    root = Path(tempfile.mkdtemp(prefix="cordon-bench-"))
    try:
        plain = bench_plain(root / "plain", args.events)
        chained = bench_chain(root / "chain", args.events)
        print(f"throughput ({args.events:,} events, 20 registered secrets):")
        print(f"  plain structlog JSON, no chain : {plain:>10,.0f} events/s")
        print(
            f"  audit pipeline, hash chain     : {chained:>10,.0f} events/s "
            f"({chained / plain:.0%} of plain)"
        )
        start = time.perf_counter()
        size = generate(root / "big", args.verify_events)
        generated = time.perf_counter() - start
        start = time.perf_counter()
        result = verify(root / "big")
        elapsed = time.perf_counter() - start
        assert result.ok and result.records == args.verify_events, result.findings[:3]
        print(
            f"verify: {args.verify_events:,} events, {len(result.files)} files, "
            f"{size / 1e6:,.0f} MB in {elapsed:.1f} s ({args.verify_events / elapsed:,.0f} "
            f"events/s; generation took {generated:.1f} s)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
