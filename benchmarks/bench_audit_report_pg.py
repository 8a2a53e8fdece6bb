"""Benchmark of `cordon audit report` on the group's chain in PostgreSQL: the whole pass a report
makes (verify the chain, read its records, build the report of one run with its configuration
diffs), its time and the peak memory Python allocated during it.

The chain: `--runs` runs written through the real pipeline (`agent.audit`), each with
`--devices` devices backed up before and after (two evidence blobs of `--blob-kb` KiB each,
distinct per device and run), a step per device and filler records, on a throwaway cluster of
Debian's server (tests/pgserver.py) over its Unix socket. The report selects the last run.

Runs against the code it sits in (it prints the path): to compare with another revision, put
this file in that revision's tree (`git archive REV agent tests benchmarks | tar -x -C DIR`)
and run it from there; with no `ChainSource.open` it measures the old two-snapshot pass.

Run: .venv/bin/python benchmarks/bench_audit_report_pg.py [--runs N] [--devices N] [--blob-kb N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import agent.audit as audit
from agent.audit.report import build
from agent.audit.source import ChainSource
from benchmarks.machine import describe
from tests.pgserver import PgServer


def write_chain(url: str, logs: Path, runs: int, devices: int, blob_kb: int) -> int:
    """The chain; returns its records."""
    audit.configure(logs, console=False, chain_url=url, seal_key="", seal_interval=0)
    log = audit.get_logger()
    line = "interface GigabitEthernet0/{n}\n description bench {r}-{d}-{n}\n no shutdown\n"
    try:
        for r in range(runs):
            run_id = f"r-bench-{r:04d}"
            log.info("run.started", run_id=run_id, playbook="isolate-site", sites=["rennes"])
            for d in range(devices):
                text = "".join(line.format(n=n, r=r, d=d) for n in range(blob_kb * 24))
                digest = audit.store_evidence(text[: blob_kb * 1024])
                log.info("config.before", run_id=run_id, device=f"sw{d}", config_sha256=digest)
            for d in range(devices):
                log.info("step.succeeded", run_id=run_id, device=f"sw{d}", step="cut")
                log.info("device.read", run_id=run_id, device=f"sw{d}", outcome="ok")
            log.info("run.finished", run_id=run_id, outcome="done", failed=0)
            for d in range(devices):
                text = "".join(line.format(n=n, r=r, d=d + 1) for n in range(blob_kb * 24))
                digest = audit.store_evidence(text[: blob_kb * 1024])
                log.info(
                    "config.after",
                    run_id=run_id,
                    device=f"sw{d}",
                    run_outcome="done",
                    config_sha256=digest,
                    outcome="saved",
                )
        audit.seal(reason="bench")
    finally:
        audit.close()
    return runs * (2 + 4 * devices)


def report_pass(url: str, run: str) -> int:
    """One report as `cordon audit report --run` makes it; returns its configuration diffs."""
    source = ChainSource.of(url)
    if hasattr(source, "open"):  # one snapshot: verify and read it, blobs by digest
        with source.open(verify=True) as read:
            report = build(read, run=run)
    else:  # before: verify (one snapshot), then read (another), each loading every blob
        integrity = source.verify()
        report = build(source, run=run, integrity=integrity)
    assert report.chain.ok, report.chain.summary
    assert report.configs and not any(c.problems for c in report.configs)
    return len(report.configs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=150)
    parser.add_argument("--devices", type=int, default=5)
    parser.add_argument("--blob-kb", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(describe())
    print(f"agent code: {Path(audit.__file__).resolve().parents[2]}")
    with tempfile.TemporaryDirectory() as tmp, PgServer.start() as pg:
        url = pg.database()
        records = write_chain(url, Path(tmp) / "logs", args.runs, args.devices, args.blob_kb)
        blobs = 2 * args.runs * args.devices
        print(
            f"chain: {records} records, {blobs} evidence blobs of {args.blob_kb} KiB "
            f"({blobs * args.blob_kb / 1024:.1f} MiB); report of the last run"
        )
        run = f"r-bench-{args.runs - 1:04d}"
        times = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            diffs = report_pass(url, run)
            times.append(time.perf_counter() - began)
        tracemalloc.start()
        report_pass(url, run)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(
            f"report pass (verify + read + build, {diffs} config diffs): median "
            f"{statistics.median(times) * 1000:.0f} ms, min {min(times) * 1000:.0f} ms "
            f"of {args.repeat}; peak Python memory {peak / 2**20:.1f} MiB"
        )


if __name__ == "__main__":
    main()
